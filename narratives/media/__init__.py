"""Media adapters: audio decoding (PyAV), audio effects and ffmpeg, captions, video encoding."""
