"""HL7 v2 datatypes -> FHIR R4 datatypes, one module per v2 type (v2-to-FHIR IG, "Data Type
Maps"). Every function takes a :class:`edge.normalize.v2.Composite` (or text) and returns
JSON-ready FHIR data, or ``None`` when nothing usable was sent."""
