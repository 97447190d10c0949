"""garrison.yaml: models, loading with precise errors, JSON Schema."""

from garrison.config.loader import json_schema, load_config, parse_config
from garrison.config.models import GarrisonConfig

__all__ = ["GarrisonConfig", "json_schema", "load_config", "parse_config"]
