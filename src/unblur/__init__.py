"""unblur: remove motion blur from photos.

Importing the package is cheap on purpose: submodules (``unblur.io``, ``unblur.blur``,
``unblur.nn`` ...) are imported where they are used, and heavy optional parts
(diffusion libraries, the web page) only by the commands that need them.
"""

__version__ = "0.1.0"
