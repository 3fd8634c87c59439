import pytest

from crysfuse.registry import Registry, UnknownNameError


def test_registry_lists_known_names_on_a_miss():
    registry: Registry[type] = Registry("thing")

    @registry.register("a")
    class A:
        pass

    assert registry.get("a") is A and registry.names() == ["a"] and "a" in registry
    with pytest.raises(UnknownNameError, match="known: a"):
        registry.get("b")
    with pytest.raises(ValueError):
        registry.register("a")(A)
