"""The app's few exception classes.

Every message is written for a person: it ends up in ``FeatureVector.error``, the admin
and API responses, so it says what is wrong with the input rather than how the code failed.
"""

from __future__ import annotations


class VisualRecsError(Exception):
    """Base class of every error this app raises on purpose."""


class ImageError(VisualRecsError):
    """A photo cannot be turned into an input for the network; ``str()`` says why."""


class MissingImage(ImageError):
    """The product has no photo, or its file is gone from storage."""


class ImageTooLarge(ImageError):
    """The file is bigger than the configured maximum number of bytes."""


class ImageTooManyPixels(ImageError):
    """The image declares more pixels than allowed (a decompression bomb, or just huge)."""


class UnreadableImage(ImageError):
    """Not an image Pillow can decode: another file type, truncated or corrupt data."""


class StorageUnavailable(VisualRecsError, OSError):
    """A stored photo exists but could not be read just now (a network storage's hiccup).

    Not an ``ImageError``: the photo is not at fault, so its vector is not marked failed. It is
    an ``OSError``, which the tasks retry; the sweep picks up what their retries did not.
    """


class UnsupportedFormat(UnreadableImage):
    """An image in a format that is refused here (uploads accept a few common ones only)."""


class WeightsError(VisualRecsError):
    """The ResNet50 weights cannot be found, fetched, verified or converted."""


class NotRegistered(VisualRecsError):
    """A model, or a key of ``VISUAL_RECS["MODELS"]``, that the app does not index."""


class SearchBusy(VisualRecsError):
    """Every search slot of this process is taken (``MAX_CONCURRENT_SEARCHES``): try again shortly."""


class SearchUnavailable(SearchBusy):
    """Search by photo cannot run in this process now (its network is missing or refused).

    Answered as a busy search (503, try later): the shopper's photo is not at fault, and the
    reason, which names the command that fixes it, goes to the server's log for staff.
    """


class UnknownPartition(VisualRecsError):
    """A partition value (e.g. a gender) that the indexed model does not have."""


class VectorError(VisualRecsError, ValueError):
    """A vector an index cannot store: NaN or infinite values, or the wrong number of dimensions."""


class IndexUnavailable(VisualRecsError):
    """The configured index backend cannot be used (e.g. the database lacks its extension)."""


class LearningError(VisualRecsError, ValueError):
    """A projection cannot be learned from these features and labels; ``str()`` says why, in terms
    of the catalog (which field, how many products), so a merchandiser can fix the labels."""
