"""FHIR over HTTP: the inbound REST server (:mod:`.server`) and the upstream client
(:mod:`.client`). Imported only when ``[fhir]`` is configured."""
