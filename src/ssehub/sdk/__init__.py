"""The client library: what runs in a worker or an application, outside the hub.

``parser`` and ``client`` read SSE streams, ``subscriber`` follows channels, ``publisher``,
``transport`` and ``agent`` publish. Import the classes from :mod:`ssehub`.
"""
