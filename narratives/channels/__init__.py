"""Channels: where approved drafts go out. One package per channel (`bluesky/`, `rss/`) behind
the `Publisher` protocol in `base` (the channel names are `core.campaigns.CHANNELS`); each a
thin adapter over the channel's own SDK that publishes exactly once per record key and sorts
failures into `TransientChannelError` (retry later) and `PermanentChannelError` (stop and tell
the editor). Nothing here reads the store: the workflow hands a publisher plain values."""

__all__ = ["base", "bluesky", "rss"]
