"""RSS/Atom: our feeds and partner feeds, in modules a caller imports directly.

`render` (feedgen documents from plain items), `files` (written atomically, the public media
manifest), `static` (a copy to host elsewhere), `fetch` (partner feeds, fetched safely) and
`publisher`. None reads the store: `narratives.workflow.feeds` hands them the published items.
"""

__all__ = ["fetch", "files", "publisher", "render", "static"]
