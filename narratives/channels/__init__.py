"""Channels: where approved drafts go out. One module per channel, each a thin adapter over the
channel's own SDK that publishes exactly once per record key and sorts failures into
`TransientChannelError` (retry later) and `PermanentChannelError` (stop and tell the editor)."""

from __future__ import annotations

from narratives.channels.bluesky import (
    BlueskyAccount,
    BlueskyChannel,
    BlueskyPost,
    Caption,
    ImageEmbed,
    PublishedRef,
    VideoEmbed,
    build_facets,
    check_post,
    count_graphemes,
    labels_for_content_notes,
    new_tid,
    split_thread,
    thread_rkeys,
)

__all__ = [
    "BlueskyAccount",
    "BlueskyChannel",
    "BlueskyPost",
    "Caption",
    "ImageEmbed",
    "PublishedRef",
    "VideoEmbed",
    "build_facets",
    "check_post",
    "count_graphemes",
    "labels_for_content_notes",
    "new_tid",
    "split_thread",
    "thread_rkeys",
]
