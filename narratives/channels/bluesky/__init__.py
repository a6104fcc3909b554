"""Bluesky: the adapter over the `atproto` SDK, in modules a caller imports directly.

`text` (graphemes, threads), `tids` (record keys), `post` (what gets posted, checked before any
network) and `publisher` are SDK-free; `client` (the logged-in channel), `errors` (failures
sorted for the scheduler) and `facets` load the SDK, about a second of import time, so this
package imports none of them itself: the draft stage and `narrative --help` stay light.
"""

__all__ = ["client", "errors", "facets", "post", "publisher", "text", "tids"]
