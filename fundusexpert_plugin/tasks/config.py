"""Task definitions as data: one YAML file per task in ``templates/``.

A task YAML declares::

    name: region_detection          # snake_case; becomes the subset fundusgen:<name>
    kind: region_detection          # one of KIND_PLACEHOLDERS
    version: 1                      # an integer; bump whenever a prompt or an answer format changes
    description: ...
    requires: [laterality]          # classification / vqa / free_form: record fields used (tasks/fields.py)
    targets: [optic_disc, ...]      # optional: finding ids the task asks about (default: all)
    max_items_per_image: 3          # optional: cap for per-finding kinds
    max_boxes: 5                    # optional: at most this many boxes per class (largest first); default: all
    prompts_capped: {en: [...], zh: [...]}  # region_detection: prompts for a record with more regions
                                    # than the answer shows; each must say so with {max_boxes}
    weight: 1.0                     # sampling weight when all tasks are loaded together (fundusgen:all)
    prompts: {en: [...], zh: [...]} # prompt variants; one is drawn per row (seeded)
    answer: {en: "...", zh: "..."}  # answer format
    answer_absent: {en: ..., zh: ...}  # region_detection only: answer for a known-absent target

Files end ``.yaml`` or ``.yml`` and are read as UTF-8 (:func:`fundusexpert_plugin.core.jsonl.read_text`).
Placeholders (``{name}``) allowed in prompts and answers depend on the kind (KIND_PLACEHOLDERS).
Validation happens when the file is loaded, so a bad task fails before the first image.

Languages: a task defines one or more of ``vocab.LANGUAGES`` (:attr:`TaskConfig.languages`), and every
prompt / answer field covers the same set. A build in a language the task lacks writes no rows of
that task in it and says so (:func:`fundusexpert_plugin.build.build_fundusgen`). The shipped
templates define every language.

Box caps: an answer to an "all" prompt carries every box. A task that must cap (context length)
sets ``max_boxes``; a region-detection row over the cap then takes its prompt from
``prompts_capped``, which must state the cap (``{max_boxes}``, e.g. "the {max_boxes} largest"), and
the grounded report says "5 of 17 shown". Such rows record ``box_cap``, ``n_boxes`` and
``full_gt_boxes_px`` (:mod:`.render`), and the evaluation scores them against the full ground truth.
A record whose source kept only its largest regions (``provenance.region_counts``: mask clusters
beyond ``data convert --max-boxes``) is over the cap too, with ``{max_boxes}`` the boxes it has; a
region-detection task without ``prompts_capped`` writes no row for that class of that record (an
"all" prompt answered with some regions would be wrong). The shipped ``region_detection`` has them.
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Dict, List, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.jsonl import read_text
from fundusexpert_plugin.core.record import FundusDataError

#: file endings of task files.
TASK_SUFFIXES = ('.yaml', '.yml')

#: kind -> placeholders its prompts / answers may use.
KIND_PLACEHOLDERS: Dict[str, Dict[str, set]] = {
    'diagnosis': {'prompt': set(), 'answer': {'diagnosis'}},
    'grading': {'prompt': {'scale'}, 'answer': {'grade', 'scale'}},
    'region_detection': {'prompt': {'target'}, 'answer': {'grounded_target', 'target'}},
    'region_identification': {'prompt': set(), 'answer': {'target', 'Target'}},
    'report': {'prompt': set(), 'answer': {'chain'}},
    'grounded_report': {'prompt': set(), 'answer': {'chain'}},
    'mcq': {'prompt': {'region', 'options'}, 'answer': {'letter', 'option'}},
}

#: data-only kinds: prompts and answers are filled from the record fields listed under ``requires``
#: (see :mod:`.fields`); a record lacking one gets no row.
FIELD_KINDS = ('classification', 'vqa', 'free_form')

#: display names of grading scales, for the {scale} placeholder.
SCALE_NAMES = {'dr_grade': ('diabetic retinopathy', '糖尿病视网膜病变'),
               'dme_grade': ('diabetic macular oedema', '糖尿病黄斑水肿')}  # vocab.DISEASE_SCALES


class TaskConfig(BaseModel):
    """A validated task definition (see the module docstring for the YAML fields).

    Types are strict (pydantic ``strict=True``): a number field takes a number only, so YAML
    ``version: true``, ``weight: yes`` or ``version: "2"`` is an error naming the field, never read as
    1 or 2; ``version``, ``max_items_per_image`` and ``max_boxes`` are integers (``version: 1.0`` is
    refused), ``weight`` an integer or a float.
    """

    model_config = ConfigDict(extra='forbid', strict=True)
    name: str = Field(pattern=r'^[a-z][a-z0-9_]*$')
    kind: Literal['diagnosis', 'grading', 'region_detection', 'region_identification', 'report',
                  'grounded_report', 'mcq', 'classification', 'vqa', 'free_form']
    requires: List[str] = Field(default_factory=list)
    version: int = Field(ge=1)
    description: str = ''
    targets: Optional[List[str]] = None
    max_items_per_image: int = Field(default=3, ge=1)
    max_boxes: Optional[int] = Field(default=None, ge=1)
    weight: float = Field(default=1.0, gt=0)
    prompts: Dict[str, List[str]]
    prompts_capped: Optional[Dict[str, List[str]]] = None
    answer: Dict[str, str]
    answer_absent: Optional[Dict[str, str]] = None
    source: str = ''
    path: Optional[str] = Field(default=None, exclude=True)

    @field_validator('requires')
    @classmethod
    def _known_fields(cls, names):
        from fundusexpert_plugin.tasks.fields import FIELDS
        unknown = [n for n in names if n not in FIELDS]
        if unknown:
            raise ValueError(f'unknown record field(s) {unknown}; available: {sorted(FIELDS)}')
        return names

    @field_validator('targets')
    @classmethod
    def _known_targets(cls, targets):
        return None if targets is None else [vocab.resolve_finding(t) for t in targets]

    @property
    def languages(self) -> tuple:
        """The languages the task defines (those of ``prompts``), in ``vocab.LANGUAGES`` order."""
        return tuple(lang for lang in vocab.LANGUAGES if lang in self.prompts)

    def check_placeholders(self) -> None:
        """Known languages, the same ones in every prompt / answer field, no empty prompt list, only
        the kind's placeholders used, every text a valid format string.

        Raises:
            ValueError: naming the field (``prompts.zh[1]``) and the language, placeholder or text.
        """
        if self.kind in FIELD_KINDS:
            if not self.requires:
                raise ValueError(f'requires: kind {self.kind!r} needs at least one record field')
            allowed = {'prompt': set(self.requires), 'answer': set(self.requires)}
        else:
            allowed = KIND_PLACEHOLDERS[self.kind]
        fields = [('prompts', self.prompts, allowed['prompt']), ('answer', self.answer, allowed['answer'])]
        if self.kind == 'region_detection' and self.max_boxes is not None and self.prompts_capped is None:
            raise ValueError(f'prompts_capped: max_boxes {self.max_boxes} is set, so rows over the cap need prompts '
                             'that say so, e.g. "Locate the {max_boxes} largest {target} ..."')
        if self.prompts_capped is not None:
            if self.kind != 'region_detection':
                raise ValueError('prompts_capped: only region_detection tasks use it')
            fields.append(('prompts_capped', self.prompts_capped, allowed['prompt'] | {'max_boxes'}))
        if self.answer_absent is not None:
            fields.append(('answer_absent', self.answer_absent, allowed['answer']))
        for field, value, _ in fields:
            extra = [lang for lang in value if lang not in vocab.LANGUAGES]
            if extra:
                raise ValueError(f'{field}: unknown language(s) {extra}; expected some of {list(vocab.LANGUAGES)}')
        # the task's languages: every language any field gives; each field must give all of them
        langs = [lang for lang in vocab.LANGUAGES if any(lang in value for _, value, _ in fields)]
        if not langs:
            raise ValueError(f'prompts: no language; give at least one of {list(vocab.LANGUAGES)}')
        for field, value, names in fields:
            missing = [lang for lang in langs if lang not in value]
            if missing:
                raise ValueError(f'{field}: missing language(s) {missing}; every prompt and answer field of a task '
                                 f'must cover the same languages (here {langs})')
            for lang, texts in value.items():
                texts = texts if isinstance(texts, list) else [texts]
                if not texts:
                    raise ValueError(f'{field}.{lang}: empty list; give at least one variant')
                for i, text in enumerate(texts):
                    try:
                        parsed = list(string.Formatter().parse(text))
                    except ValueError as exc:  # a stray brace: Single '{' encountered in format string
                        raise ValueError(f'{field}.{lang}[{i}] = {text!r}: {exc} (write a literal brace '
                                         'as {{ or }})') from None
                    for _, ph, spec, conversion in parsed:
                        if ph is not None and (spec or conversion):
                            shown = '{' + ph + (f'!{conversion}' if conversion else '') + (f':{spec}' if spec else '') + '}'
                            raise ValueError(f'{field}.{lang}[{i}]: {shown}: format specs and conversions are not '
                                             f'allowed (the value is display text); write {{{ph}}}')
                        if ph is not None and ph not in names:
                            raise ValueError(f'{field}.{lang}[{i}]: placeholder {{{ph}}} is not filled for kind '
                                             f'{self.kind!r}; allowed: {sorted(names) or "none"}'
                                             + (' (list record fields under requires:)' if self.kind in FIELD_KINDS
                                                else ''))
                    if field == 'prompts_capped' and '{max_boxes}' not in text:
                        raise ValueError(f'prompts_capped.{lang}[{i}]: must state the cap with {{max_boxes}}')


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing a key given twice in one mapping (PyYAML keeps the last one
    silently, so a second ``answer:`` would replace the first unseen)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.YAMLError(f'line {key_node.start_mark.line + 1}: key {key!r} given twice '
                                     f'(first on line {seen[key] + 1})')
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_task(path: Path | str) -> TaskConfig:
    """Load and validate one task YAML.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: not UTF-8 (``path:line: byte offset N is not UTF-8; save the task file as
            UTF-8``), bad YAML or a bad field;
            the message names the file and the field.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'task file not found: {path}')
    try:
        text = read_text(path)   # UTF-8 (BOM-aware); bad bytes named by line and offset
    except FundusDataError as exc:
        raise FundusDataError(f'{exc}; save the task file as UTF-8') from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise FundusDataError(f'{path}: not valid YAML: {exc}') from None
    if not isinstance(data, dict):
        raise FundusDataError(f'{path}: expected a mapping of task fields, got {type(data).__name__}')
    try:
        task = TaskConfig.model_validate(data)
        task.check_placeholders()
    except ValidationError as exc:
        errs = '; '.join(_validation_error(e) for e in exc.errors())
        raise FundusDataError(f'{path}: {errs}') from None
    except ValueError as exc:
        raise FundusDataError(f'{path}: {exc}') from None
    task.path = str(path)
    return task


def _validation_error(error: dict) -> str:
    """One pydantic error as ``'<field>: <message> (got <value>)'``; the value only for a scalar given
    with the wrong type or out of range (YAML ``true`` shows as ``True``)."""
    field = '.'.join(str(p) for p in error['loc']) or '<task>'
    value = error.get('input')
    shown = (f' (got {value!r})' if error['type'] != 'missing' and error['loc']
             and isinstance(value, (bool, int, float, str)) else '')
    return f'{field}: {error["msg"]}{shown}'


def default_tasks_dir() -> Path:
    """The shipped ``templates/`` folder: the installed package's copy (``fundusexpert_plugin/templates``),
    else, in a repository checkout (a ``pyproject.toml`` beside the package), the repository's. A
    ``templates/`` folder of another distribution beside an installed package is never taken."""
    here = Path(__file__).resolve().parents[1]
    if (here / 'templates').is_dir():
        return here / 'templates'
    if (here.parent / 'pyproject.toml').is_file() and (here.parent / 'templates').is_dir():
        return here.parent / 'templates'
    raise FileNotFoundError(f'no templates/ folder next to {here}; pass tasks_dir explicitly')


def task_files(folder: Path | str) -> List[Path]:
    """The task files (``*.yaml``, ``*.yml``) of a folder, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist or holds no task file.
        FundusDataError: one name present as both ``.yaml`` and ``.yml`` (both files named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'tasks folder not found: {folder}')
    files = sorted(p for p in folder.iterdir() if p.suffix in TASK_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f'no task *.yaml or *.yml files in {folder}')
    by_stem: Dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:
            raise FundusDataError(f'{by_stem[f.stem]} and {f}: the same task file twice (.yaml and .yml); '
                                  'keep one')
        by_stem[f.stem] = f
    return files


def load_tasks(tasks_dir: Optional[Path | str] = None) -> List[TaskConfig]:
    """All tasks (``*.yaml``, ``*.yml``) of a folder, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist or holds no task file.
        FundusDataError: a bad task file, one name as both ``.yaml`` and ``.yml``, or two files with the
            same task name.
    """
    folder = Path(tasks_dir) if tasks_dir is not None else default_tasks_dir()
    tasks: Dict[str, TaskConfig] = {}
    for f in task_files(folder):
        task = load_task(f)
        if task.name in tasks:
            raise FundusDataError(f'{f}: task name {task.name!r} already defined in {tasks[task.name].path}')
        tasks[task.name] = task
    return [tasks[k] for k in sorted(tasks)]
