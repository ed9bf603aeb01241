from unblur.cli import main

raise SystemExit(main())
