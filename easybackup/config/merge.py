"""Global -> strategy merging: mappings are merged key by key (but `retention` tiers are replaced whole), everything
else (lists too) is replaced."""

from __future__ import annotations

import copy

from easybackup.config.schema import section_keys


# Mappings a strategy replaces whole: tiers written under a strategy are its policy, not additions to global's.
# `encryption` too: a strategy's recipients are its own, not additions to global's.
REPLACED_WHOLE = frozenset({"retention", "encryption"})


def deep_merge(base: dict, override: dict) -> dict:
    """Given two mappings, return a new one: base's keys, overridden by override's, nested mappings merged (except
    the REPLACED_WHOLE keys)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in REPLACED_WHOLE:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def shared_keys() -> frozenset:
    """Return the keys that may appear both under `global` and under a strategy (the strategy wins)."""
    sections = section_keys()
    return sections["global"] & sections["strategy"]


def effective_strategy(global_section: dict, strategy: dict) -> dict:
    """Given the `global` mapping and one strategy mapping, return the strategy with global's shared keys
    as defaults (global-only keys such as log_level stay out)."""
    defaults = {key: value for key, value in global_section.items() if key in shared_keys()}
    return deep_merge(defaults, strategy)


def origin(global_section: dict, strategy: dict, index: int, key: tuple) -> tuple:
    """Given both mappings, a strategy's index and a key path, return the path the merged value came from:
    the strategy's own when it sets one, else global's."""
    node = strategy
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return ("global", *key) if _has(global_section, key) else ("strategies", index, *key)
        node = node[part]
    return ("strategies", index, *key)


def _has(node, key: tuple) -> bool:
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
