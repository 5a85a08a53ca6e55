"""MCQ prompt and scoring: the paper's strict rule against our lenient matcher."""
import pytest

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.eval.mcq import (accuracy, build_prompt, category_name, check_answer_letter, is_mcq_prompt,
                                          lenient_letter, parse_options, score_item, strict_letter)

OPTIONS = {'A': 'non glaucoma', 'B': 'glaucoma', 'C': 'cataract'}


def test_prompt_is_the_official_one():
    # official src/eval_api/call_api.py::prepare_prompt; empty option D is left out
    assert build_prompt('What does the image show?', {**OPTIONS, 'D': '', 'E': float('nan')}) == (
        "Answer with the option's letter from the given choices directly.\n"
        'Question: What does the image show?\nA. non glaucoma\nB. glaucoma\nC. cataract\n')


def test_options_are_read_back_from_the_prompt():
    prompt = '<image>' + build_prompt('Q?', OPTIONS)
    assert parse_options(prompt) == OPTIONS and is_mcq_prompt(prompt)
    assert not is_mcq_prompt('Describe the fundus image in detail.')


@pytest.mark.parametrize('response, strict, lenient', [
    ('B', 'B', 'B'),
    ('B. glaucoma', 'B', 'B'),
    (' B', '', 'B'),                       # leading space: a miss for the paper's rule (no stripping)
    ('\nB', '', 'B'),
    ('(B)', '', 'B'),
    ('**B**', '', 'B'),
    ('The answer is B.', '', 'B'),         # 'T' is not A-E
    ('答案：B', '', 'B'),
    ('Glaucoma', '', 'B'),                 # option text; 'non glaucoma' is not in the response
    ('This is non glaucoma.', '', 'A'),    # 'non glaucoma' contains 'glaucoma': the longer option wins
    ('A fundus photograph with glaucoma', 'A', 'B'),  # strict reads the article 'A' as the letter
    ('Cataract or glaucoma', 'C', ''),     # strict: 'C' of 'Cataract'; lenient: two options -> none
    ('', '', ''),
    (None, '', ''),
    ('F', '', ''),
])
def test_strict_and_lenient_extraction(response, strict, lenient):
    assert strict_letter(response) == strict
    assert lenient_letter(response, OPTIONS) == lenient


def test_accuracy_overall_and_per_category_rounded_to_three_decimals():
    results = [score_item('B', 'B', OPTIONS, 'glaucoma'),        # strict hit, lenient hit
               score_item(' B', 'B', OPTIONS, 'glaucoma'),       # strict miss, lenient hit
               score_item('A', 'B', OPTIONS, 'glaucoma'),        # both miss
               score_item('C', 'C', OPTIONS, 'cataract'),        # both hit
               score_item('', 'A', OPTIONS, None)]               # empty response: miss; category Unknown
    acc = accuracy(results)
    # strict: hits 1 + 1 = 2 of 5 = 0.4; glaucoma 1/3 = 0.333
    assert acc['strict']['overall'] == 0.4
    assert acc['strict']['per_category'] == {'Unknown': 0.0, 'cataract': 1.0, 'glaucoma': 0.333}
    # lenient: hits 2 + 1 = 3 of 5 = 0.6; glaucoma 2/3 = 0.667
    assert acc['lenient']['overall'] == 0.6 and acc['lenient']['per_category']['glaucoma'] == 0.667
    assert acc['per_category_n'] == {'Unknown': 1, 'cataract': 1, 'glaucoma': 3}


def test_answer_uses_its_first_character_like_get_acc():
    assert score_item('B', 'B. glaucoma', OPTIONS).strict_hit
    assert accuracy([])['strict']['overall'] is None


@pytest.mark.parametrize('answer, expected', [
    ('C. moderate NPDR', 'C'), (' B ', 'B'), ('A) no DR', 'A'), ('B：轻度', 'B'), ('C moderate', 'C')])
def test_a_checked_answer_may_carry_its_option_text(answer, expected):
    assert check_answer_letter(answer, {'A': 'no DR', 'B': 'mild', 'C': 'moderate NPDR'}, 'f:2') == expected


@pytest.mark.parametrize('answer', ['Cataract', 'D. severe', 'c', ''])
def test_a_checked_answer_that_names_no_option_is_refused(answer):
    with pytest.raises(FundusDataError, match=r"^f:2: answer = .*: is not one of the row's options \['A', 'B', 'C'\]"):
        check_answer_letter(answer, {'A': 'no DR', 'B': 'mild', 'C': 'moderate NPDR'}, 'f:2')


@pytest.mark.parametrize('response', [
    'A or B',            # read as B before: the article check took 'A or' for 'A <word>'
    'A and B',
    'A, B',              # read as A before: a leading letter followed by a comma
    'B or C',
    'The answer is A or B.',
    '**A** and **C**',
    'B, not A',          # names two letters: no letter either
])
def test_a_response_naming_two_letters_gets_none(response):
    assert lenient_letter(response, OPTIONS) == ''
    assert not score_item(response, 'B', OPTIONS).lenient_hit


@pytest.mark.parametrize('response, lenient', [
    ('A fundus photograph; the answer is B', 'B'),   # article 'A' + one letter
    ('A normal eye? No: B', 'B'),                    # article before a lower-case word
    ('B', 'B'),
])
def test_the_article_check_only_stands_aside_for_a_second_letter(response, lenient):
    assert lenient_letter(response, OPTIONS) == lenient


def test_letters_inside_a_repeated_option_text_do_not_count():
    options = {'A': 'Type A lesion', 'B': 'Type B lesion'}
    assert lenient_letter('B. Type B lesion', options) == 'B'


def test_every_benchmark_category_is_listed_including_empty_ones():
    results = [score_item('B', 'B', OPTIONS, 'glaucoma'), score_item('A', 'B', OPTIONS, 'glaucoma')]
    acc = accuracy(results, categories=['glaucoma', 'cataract', 'glaucoma', float('nan'), ''])
    # glaucoma 1/2 = 0.5; cataract and Unknown (NaN, '') have no item: 0.0 with n = 0
    assert acc['strict']['per_category'] == {'Unknown': 0.0, 'cataract': 0.0, 'glaucoma': 0.5}
    assert acc['lenient']['per_category'] == {'Unknown': 0.0, 'cataract': 0.0, 'glaucoma': 0.5}
    assert acc['per_category_n'] == {'Unknown': 0, 'cataract': 0, 'glaucoma': 2}
    assert acc['strict']['overall'] == 0.5 and acc['n'] == 2


@pytest.mark.parametrize('category', [None, '', float('nan'), 'nan', 'NaN'])
def test_missing_or_nan_category_is_unknown_on_direct_calls(category):
    assert score_item('B', 'B', OPTIONS, category).category == 'Unknown'
    assert category_name(category) == 'Unknown'
    assert accuracy([score_item('B', 'B', OPTIONS, category)])['per_category_n'] == {'Unknown': 1}


def test_lenient_extraction_without_known_options_reads_letters_only():
    """No options (a meta answer for a prompt without option lines): letters still count, no KeyError."""
    from fundusexpert_plugin.eval.mcq import lenient_letter
    assert lenient_letter('The answer is C', {}) == 'C'
    assert lenient_letter('glaucoma', {}) == ''
