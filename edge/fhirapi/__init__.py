"""The FHIR R4 REST API's logic: requests in, responses out (no sockets here; the aiohttp shell
is :mod:`adapters.fhir.server`), and the upstream sources' polling (:mod:`.poller`)."""
