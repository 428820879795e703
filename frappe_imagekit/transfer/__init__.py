"""Send an image to a deploy host: through a local registry and an SSH tunnel, or save | load.

``registry``: Debian's ``docker-registry`` on this machine, bound to 127.0.0.1, its storage kept
between deploys (``$IMAGEKIT_REGISTRY_DIR``, else ``$XDG_DATA_HOME/imagekit/registry``).
``push``: ``docker tag`` + ``docker push`` there; the digest it prints is the version's digest.
``tunnel``: a paramiko remote forward (127.0.0.1 on both ends) from the server to that registry.
``send``: the one entry point, ``send_image``: push, forward, ``docker pull NAME@DIGEST`` on the
server, tag it ``IMAGE:VERSION`` and prove its id is the local one before anything stops; with
``--transfer save`` (or when the server refuses the forward) ``docker save | docker load``.
"""
