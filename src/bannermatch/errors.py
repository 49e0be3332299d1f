"""Errors that reach the user as a one-line message and a non-zero exit."""


class BannermatchError(Exception):
    """A problem with the user's input or collection, explained in one line."""


class ImageError(BannermatchError):
    """An image that cannot be decoded; the message is the precise reason."""


class CollectionError(BannermatchError):
    """A collection folder that is missing, incomplete or inconsistent."""


class ModelError(BannermatchError):
    """A model that is unknown, or whose weights cannot be loaded."""
