"""HL7 v2 segments -> FHIR resources, one module per segment (v2-to-FHIR IG "Segment Maps").

Each module's ``map_*`` function reads one segment through a
:class:`~edge.normalize.conversion.Conversion` and adds what it maps to it."""
