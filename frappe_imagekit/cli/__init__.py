"""The imagekit command line: parse options, call one core function, render its result."""

from frappe_imagekit.cli.main import app, main

__all__ = ["app", "main"]
