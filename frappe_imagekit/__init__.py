"""frappe_imagekit: build, record and deploy custom Frappe/ERPNext images safely."""

__version__ = "0.1.0"
