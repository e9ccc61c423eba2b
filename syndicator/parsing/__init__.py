"""Item files: their format, their Markdown-ish bodies, titles and French dates."""
