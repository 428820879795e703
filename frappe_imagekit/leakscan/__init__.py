"""The leak scanner: every known secret, in every form, everywhere a finished image keeps bytes.

``scan.scan_image`` is the entry point (history, config and every layer of the ``docker save``
stream); its steps are ``needles`` (the forms and the atoms searched for), ``stream`` (the
chunked search and redacted excerpts) and ``tar`` (the streamed tar reader). ``cache`` remembers
the layers already scanned clean for the same secrets. The names below are the package's
public face; build imports them from here.

How, fast: a layer tar is scanned as one flat byte stream (file contents and the member names
in its headers alike) with ``bytes.find`` for each *atom*: the forms of the redactor that do not
contain another form. A light tar-header walker follows the same stream to name the member that
holds a match, without Python work per byte of content.
"""

from frappe_imagekit.leakscan.needles import Needles
from frappe_imagekit.leakscan.scan import Finding, LayerHints, ScanResult, scan_image, scan_metadata

__all__ = ["Finding", "LayerHints", "Needles", "ScanResult", "scan_image", "scan_metadata"]
