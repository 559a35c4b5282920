"""Errors a user can act on. The CLI prints their message (no traceback) and exits 2."""


class TunebenchError(Exception):
    """Base class: the message names the thing that is wrong and how to fix it."""


class UnknownNameError(TunebenchError, KeyError):
    """An unknown task, method, backbone or option; the message lists the choices."""

    def __init__(self, what: str, name: str, choices):
        self.what, self.name, self.choices = what, name, sorted(choices)
        super().__init__(f"unknown {what} {name!r}; choose one of: {', '.join(self.choices)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DataError(TunebenchError):
    """A missing data root or file, or a malformed row (path and line are in the message)."""


class SplitError(TunebenchError):
    """A K-shot split that cannot be drawn as asked (e.g. K larger than a label's rows)."""


class BackboneError(TunebenchError):
    """A backbone that cannot be loaded here (no network, missing package) or cannot serve a method."""


def unknown(what: str, name: str, choices) -> UnknownNameError:
    return UnknownNameError(what, name, choices)
