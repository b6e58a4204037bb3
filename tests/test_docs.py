"""The examples in the public docstrings, and the README's doctest blocks
that stand alone, run and print what they say."""

import doctest
import pathlib
import re

import pytest

import fastxent
from fastxent import _api, _backends, _config, _evaluate


@pytest.mark.parametrize("module", [fastxent, _api, _backends, _config, _evaluate],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("heading", ["### Evaluation in one read"])
def test_readme_examples(heading):
    # The first python block after the heading, run as a doctest.
    text = README.read_text(encoding="utf-8")
    assert heading in text, heading
    block = re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)
    test = doctest.DocTestParser().get_doctest(block, {}, heading, str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0
    assert runner.tries > 0
