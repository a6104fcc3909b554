"""The render stage: captioned audiogram videos; `stage.run` is its entry (see stage.py)."""
