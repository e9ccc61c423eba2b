"""The `syndicator` command line."""
