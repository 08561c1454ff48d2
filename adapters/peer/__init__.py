"""The peer edge: the mutual-TLS HTTP listener for the peer FHIR API and the client that
``hie-edge peer query`` uses. Both only move bytes; decisions live in :mod:`edge.peer`."""
