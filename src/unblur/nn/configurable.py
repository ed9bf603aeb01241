"""Constructor arguments recorded automatically, so that a model file can rebuild the network.

A model file stores ``arch`` and ``config``, the arguments that built the network (see
:mod:`unblur.modelfile`). Written by hand, such a dict drifts from the signature: an argument left
out is silently rebuilt with its default. :func:`register_to_config` (after diffusers' decorator of
the same name) reads them from the call instead::

    class NAFNet(nn.Module):
        @register_to_config
        def __init__(self, width: int = 16, enc_blocks=(1, 1, 1, 8), ...):
            ...

    NAFNet(width=32).config  # {"width": 32, "enc_blocks": [1, 1, 1, 8], ...}: every argument, defaults included
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path


def register_to_config(init=None, *, ignore: tuple[str, ...] = ()):
    """Decorate an ``__init__``: before its body runs, ``self.config`` becomes a dict of every argument of the
    call, defaults filled in, as JSON values (tuples -> lists, paths -> strings).

    ``ignore``: arguments that are read at construction only and must not be stored (a path of this
    machine, say). A subclass whose decorated ``__init__`` calls a decorated base ``__init__`` keeps its
    own record: the outermost call wins. Values that JSON cannot hold are refused here, not when a model
    file is written hours later.
    """
    if init is None:
        return functools.partial(register_to_config, ignore=ignore)
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self, *args, **kwargs):
        if "config" not in self.__dict__:  # a base class's __init__ called from a recorded subclass: keep the subclass's
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            names = list(signature.parameters)[1:]  # not self
            config = {name: _plain(bound.arguments[name]) for name in names if name not in ignore}
            try:
                json.dumps(config)
            except TypeError as err:
                raise TypeError(f"{type(self).__name__}: a constructor argument cannot be stored in a model file ({err})") from None
            # a plain attribute, set before nn.Module.__init__ runs (the body may read it)
            object.__setattr__(self, "config", config)
        init(self, *args, **kwargs)

    return recording_init


def _plain(value):
    """``value`` as JSON holds it: tuples become lists (what a model file gives back), paths strings."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
