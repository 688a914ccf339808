"""The core's built-in plugin: registered first, under the name ``core``."""
