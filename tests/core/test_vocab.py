import pytest

from fundusexpert_plugin.core import vocab


@pytest.mark.parametrize('name,expected', [
    ('Hard exudates', 'hard_exudates'), ('hemorrhage', 'haemorrhages'), ('haemorrhage', 'haemorrhages'),
    ('soft exudates', 'cotton_wool_spots'), ('cotton-wool spots', 'cotton_wool_spots'), ('OD', 'optic_disc'),
])
def test_aliases_resolve_to_one_id(name, expected):
    assert vocab.resolve_finding(name) == expected


def test_unknown_label_suggests_close_match():
    with pytest.raises(ValueError, match=r"f\.jsonl:2: findings\[0\]\.label: unknown finding label 'hard exudate s'.*"
                                         r"did you mean 'hard_exudates'"):
        vocab.resolve_finding('hard exudate s', where='f.jsonl:2: findings[0].label')


def test_every_finding_and_grade_has_both_languages():
    for term in vocab.FINDINGS.values():
        assert term.en and term.zh
    for scale in vocab.GRADE_SCALES.values():
        for en, zh in scale.values():
            assert en and zh
    assert vocab.grade_name('dr_grade', '2', 'en').startswith('moderate non-proliferative')
    assert vocab.grade_name('dr_grade', '4', 'zh') == '增殖性糖尿病视网膜病变'
    # IDRiD DME grade 0 is "no apparent hard exudates" (Porwal 2018): a risk grade, not an exclusion of oedema
    assert vocab.grade_name('dme_grade', '0', 'en') == 'no risk of diabetic macular oedema: no apparent hard exudates'
    assert vocab.grade_name('dme_grade', '0', 'zh') == '无糖尿病黄斑水肿风险：未见硬性渗出'


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        vocab.finding_name('optic_disc', 'fr')


def test_a_suggestion_names_each_finding_once():
    """'drusn' is close to the aliases 'drusen' and 'druse', both the finding drusen: one suggestion."""
    with pytest.raises(ValueError) as exc:
        vocab.resolve_finding('drusn')
    assert "did you mean 'drusen'? Known:" in str(exc.value)


@pytest.mark.parametrize('cell,expected', [
    ('diabetic_retinopathy', 'diabetic_retinopathy'), ('Diabetic-Retinopathy', 'diabetic_retinopathy'),
    ('age-related macular degeneration', 'age_related_macular_degeneration'), ('糖尿病视网膜病变', 'diabetic_retinopathy'),
    (' 青光眼 ', 'glaucoma'), ('no apparent retinal disease', 'normal'), ('retinopathy', None), ('', None),
])
def test_a_diagnosis_cell_is_read_by_id_or_english_or_chinese_name(cell, expected):
    assert vocab.resolve_diagnosis(cell) == expected
