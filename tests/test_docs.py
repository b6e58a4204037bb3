"""The examples in the public docstrings run and print what they say."""

import doctest

import pytest

import fastxent
from fastxent import _api, _backends, _config, _evaluate


@pytest.mark.parametrize("module", [fastxent, _api, _backends, _config, _evaluate],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
