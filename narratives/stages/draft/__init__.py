"""The draft stage: post templates, the video a post carries, and saving drafts without
overwriting an editor."""
