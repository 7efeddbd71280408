"""The build conveyor: recipes, isolated reproducible builds, SLSA provenance."""
