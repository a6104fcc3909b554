"""Channels: where approved drafts go out. One module per channel, each a thin adapter over the
channel's own SDK that publishes exactly once per record key and sorts failures into
`TransientChannelError` (retry later) and `PermanentChannelError` (stop and tell the editor)."""
