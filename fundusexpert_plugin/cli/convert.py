"""``fundusexpert data convert``: a public dataset's own layout -> FundusGen records jsonl.

One subcommand per layout; each reads the files as the dataset distributes them (see the reader
modules in :mod:`fundusexpert_plugin.sources` for the layouts and ``GRADES.md`` there for the
label mappings) and writes one record per image to ``--out``, with image paths relative to the
output file's folder (``--absolute-paths`` keeps them absolute). ``fundusexpert data build --records OUT``
consumes the file.

Examples::

    fundusexpert data convert idrid-grading --images "B. Disease Grading/1. Original Images/a. Training Set" \\
        --grades "B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv" \\
        --out records/idrid_train.jsonl
    fundusexpert data convert yolo --images sample/images --labels sample/labels_yolo \\
        --source-dataset "IDRiD via CODRAS" --licence "CC BY-SA 4.0" --annotated-labels classes --out r.jsonl

Bad input stops the conversion with a message naming the file, its line/row and the field; with
``--lenient`` the item is skipped and listed in the summary. Labels the record cannot hold are never
errors: they are left out and counted. Exit status: 0 written, 2 bad input (an input that yields no
record is bad input, also with ``--lenient``).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional

from fundusexpert_plugin.cli.common import non_negative_float, positive_float, positive_int
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.sources.masks import PAPER_AREA_THRESHOLD_PX2, PAPER_EPS_PX, PAPER_MAX_BOXES, PAPER_MIN_SAMPLES

if TYPE_CHECKING:
    from fundusexpert_plugin.core.record import FundusGenRecord


@dataclass(frozen=True)
class Format:
    """One subcommand: help text, its options, and the reader call."""

    help: str
    add: Callable[[argparse.ArgumentParser], None]
    read: Callable[[argparse.Namespace, object], Iterable[FundusGenRecord]]
    generic: bool = False


def _dir(p: argparse.ArgumentParser, flag: str, help_text: str, required: bool = True) -> None:
    p.add_argument(flag, type=Path, required=required, help=help_text)


def _mask_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('mask -> box clustering (official pixel2bbox defaults)')
    g.add_argument('--eps-px', type=positive_float, default=PAPER_EPS_PX, help='DBSCAN radius, pixels (default %(default)s)')
    g.add_argument('--min-samples', type=positive_int, default=PAPER_MIN_SAMPLES, help='default %(default)s')
    g.add_argument('--area-threshold-px2', type=non_negative_float, default=PAPER_AREA_THRESHOLD_PX2,
                   help='keep clusters with area above this, px^2 (default %(default)s)')
    g.add_argument('--max-boxes', type=positive_int, default=PAPER_MAX_BOXES, help='per class and image (default %(default)s)')


def _class_options(p: argparse.ArgumentParser, annotated: bool = True, laterality: bool = True) -> None:
    p.add_argument('--class-map', action='append', default=[], metavar='NAME=ID',
                   help='map a source class to a finding id, or NAME=- to leave it out (repeatable)')
    if annotated:
        p.add_argument('--annotated-labels', default='',
                       help='comma-separated finding ids the source annotates exhaustively (a missing box '
                            'then means absent), or "classes" for every class of the file; default: none')
    if laterality:
        p.add_argument('--laterality-from-disc', action='store_true',
                       help='infer laterality from a single optic-disc box (macula-centred photos only)')


def _params(args):
    from fundusexpert_plugin.sources.base import MaskBoxParams
    return MaskBoxParams(args.eps_px, args.min_samples, args.area_threshold_px2, args.max_boxes)


def _class_map(args):
    from fundusexpert_plugin.sources.generic import parse_class_map
    return parse_class_map(args.class_map)


def _generic(args) -> dict:
    from fundusexpert_plugin.sources.base import SEE_TERMS, SourceInfo
    out = {'source': SourceInfo(args.source_dataset, args.licence or SEE_TERMS, args.attribution or '')}
    if hasattr(args, 'class_map'):
        out['class_map'] = _class_map(args)
    if hasattr(args, 'annotated_labels'):
        annotated = [a.strip() for a in args.annotated_labels.split(',') if a.strip()]
        out['annotated'] = 'classes' if annotated == ['classes'] else annotated
    if hasattr(args, 'laterality_from_disc'):
        out['infer_laterality'] = args.laterality_from_disc
    return out


def _src(module: str):
    import importlib
    return importlib.import_module(f'fundusexpert_plugin.sources.{module}')


def _add_idrid_grading(p):
    _dir(p, '--images', '"1. Original Images/a. Training Set" of B. Disease Grading (or C. Localization)')
    _dir(p, '--grades', 'IDRiD_Disease Grading_*_Labels.csv', required=False)
    _dir(p, '--od-centres', 'IDRiD_OD_Center_*_Markups.csv (laterality only)', required=False)
    _dir(p, '--fovea-centres', 'IDRiD_Fovea_Center_*_Markups.csv', required=False)


def _add_images_masks(images_help: str, masks_help: str):
    def add(p):
        _dir(p, '--images', images_help)
        _dir(p, '--masks', masks_help)
        _mask_options(p)
    return add


def _add_images_table(flag: str, images_help: str, table_help: str):
    def add(p):
        _dir(p, '--images', images_help)
        _dir(p, flag, table_help)
    return add


def _add_refuge(p):
    _dir(p, '--images', 'Training400, REFUGE-Validation400 or REFUGE-Test400 (searched recursively)')
    _dir(p, '--masks', 'Disc_Cup_Masks folder', required=False)
    p.add_argument('--table', type=Path, action='append', default=[],
                   help='Fovea_location.xlsx / Glaucoma_label_and_Fovea_location.xlsx (CSV or xlsx; repeatable)')
    _mask_options(p)


def _add_drishti(p):
    _dir(p, '--images', 'Drishti-GS1_files/Training/Images (or Test/Images)')
    _dir(p, '--gt', 'Training/GT or Test/Test_GT (soft maps)', required=False)
    _dir(p, '--labels', 'optional table: image column + Glaucoma/Label column (Glaucomatous/Normal)', required=False)
    p.add_argument('--softmap-min', type=int, default=127, help='soft-map value counted as disc/cup (default 127)')
    _mask_options(p)


def _add_ichallenge(p):
    _dir(p, '--images', 'Training400 / PALM-Training400 / a validation folder (searched recursively)')
    p.add_argument('--table', type=Path, action='append', default=[],
                   help='fovea and/or label table, CSV or xlsx (imgName, Fovea_X, Fovea_Y, Label; repeatable)')
    _dir(p, '--disc-masks', 'Disc_Masks folder', required=False)
    _dir(p, '--lesion-masks', 'Lesion_Masks folder (one sub-folder per lesion)', required=False)
    p.add_argument('--mask-foreground', choices=['zero', 'nonzero'], default='zero',
                   help='mask pixels that are the object (iChallenge: 0; default %(default)s)')
    _class_options(p, annotated=False, laterality=False)
    _mask_options(p)


def _add_eophtha(p):
    _dir(p, '--root', 'the e_optha_EX or e_optha_MA folder')
    p.add_argument('--lesion', choices=['EX', 'MA'], required=True,
                   help='EX (hard exudates) or MA (microaneurysms). MA regions are a few pixels across: the '
                        "official pixel2bbox filters below drop most of them (the photo is then left out, as its "
                        'one class says nothing); pass --min-samples 1 --area-threshold-px2 0 to keep them')
    _mask_options(p)


def _add_yolo(p):
    _dir(p, '--images', 'image folder (recursive)')
    _dir(p, '--labels', 'YOLO label folder (<stem>.txt)')
    _dir(p, '--classes', 'class-name file: one name per line, or an Ultralytics data.yaml (default: classes.names, classes.txt, data.yaml or dataset.yaml in <labels> or the two folders above it)', required=False)
    _class_options(p)


def _add_coco(p):
    _dir(p, '--json', 'COCO detection json')
    _dir(p, '--images', 'folder that file_name is relative to (default: the json folder)', required=False)
    _class_options(p)


def _add_masks(p):
    _dir(p, '--images', 'image folder (recursive)')
    _dir(p, '--masks', 'folder with one sub-folder of masks per class')
    p.add_argument('--foreground', default='nonzero', help='"nonzero" (default), "zero" or a grey value')
    p.add_argument('--missing', choices=['unknown', 'absent', 'error'], default='unknown',
                   help='what a missing mask means (default %(default)s)')
    _class_options(p, annotated=False)
    _mask_options(p)


def _add_codras(p):
    _dir(p, '--annotations', 'annotation jsonl: image, width, height, annotations[{label, class_id, bbox_xyxy}]')
    _dir(p, '--images', 'dataset folder the image paths are relative to (default: the jsonl folder)', required=False)
    p.add_argument('--split', default=None, help='keep only lines with this "split" value')


def _add_box_csv(p):
    _dir(p, '--csv', 'CSV with one box per row: image,label,x1,y1,x2,y2 (pixels)')
    _dir(p, '--images', 'dataset folder the image paths are relative to (default: the CSV folder)', required=False)
    _class_options(p)


def _add_csv(p):
    _dir(p, '--csv', 'CSV (or xlsx/xls): image + dr_grade, dme_grade, diagnosis, laterality, record_id (default: '
                     'the image path, extension kept), sha256 (expected digest of the image file)')
    _dir(p, '--images', 'folder image paths are relative to (default: the CSV folder)', required=False)


def _add_dicom(p):
    _dir(p, '--dicom', 'a DICOM photograph, or a folder of them (searched recursively; files found by content)')
    _dir(p, '--images-out', 'folder for the de-identified PNGs (default: <--out folder>/images)', required=False)
    p.add_argument('--salt', help='secret for the salted-hash record ids (default: recorded or random)')
    _dir(p, '--salt-file', 'where the salt is recorded and read back (default: <--out folder>/dicom_salt.txt)',
         required=False)
    p.add_argument('--accept-burned-in', action='store_true', help='use files with BurnedInAnnotation = YES')
    p.add_argument('--multi-frame', choices=('first', 'refuse'), default='first',
                   help='multi-frame files: frame 0 with a warning (default), or refuse')


def _read_dicom(a, log):
    from fundusexpert_plugin.core.dicom import resolve_salt
    dicom = _src('dicom')
    out_dir = Path(os.path.abspath(a.out)).parent
    salt = resolve_salt(a.salt, a.salt_file or out_dir / 'dicom_salt.txt')
    return dicom.read_dicom_folder(a.dicom, a.images_out or out_dir / 'images', salt=salt,
                                   accept_burned_in=a.accept_burned_in, multi_frame=a.multi_frame,
                                   lenient=a.lenient, log=log)


FORMATS: Dict[str, Format] = {
    'idrid-grading': Format('IDRiD disease grading and/or localization CSVs', _add_idrid_grading,
                            lambda a, log: _src('idrid').read_idrid_grading(
                                a.images, grades_csv=a.grades, od_csv=a.od_centres, fovea_csv=a.fovea_centres,
                                lenient=a.lenient, log=log)),
    'idrid-segmentation': Format('IDRiD lesion and optic-disc masks (A. Segmentation)', _add_images_masks(
        '"A. Segmentation/1. Original Images/a. Training Set"', '"2. All Segmentation Groundtruths/a. Training Set"'),
        lambda a, log: _src('idrid').read_idrid_segmentation(a.images, a.masks, params=_params(a),
                                                              lenient=a.lenient, log=log)),
    'ddr-grading': Format('DDR DR_grading train/valid/test.txt', _add_images_table(
        '--grades', 'DR_grading/train (images)', 'DR_grading/train.txt'),
        lambda a, log: _src('ddr').read_ddr_grading(a.images, a.grades, lenient=a.lenient, log=log)),
    'ddr-segmentation': Format('DDR lesion_segmentation masks (EX/HE/MA/SE)', _add_images_masks(
        'lesion_segmentation/train/image', 'lesion_segmentation/train/label'),
        lambda a, log: _src('ddr').read_ddr_segmentation(a.images, a.masks, params=_params(a),
                                                          lenient=a.lenient, log=log)),
    'ddr-detection': Format('DDR lesion_detection PASCAL VOC XML boxes', _add_images_table(
        '--xml', 'lesion_detection images folder', 'folder of VOC .xml files'),
        lambda a, log: _src('ddr').read_ddr_detection(a.images, a.xml, lenient=a.lenient, log=log)),
    'aptos': Format('APTOS 2019 train.csv (id_code, diagnosis)', _add_images_table(
        '--csv', 'train_images', 'train.csv'),
        lambda a, log: _src('grades_csv').read_aptos(a.images, a.csv, lenient=a.lenient, log=log)),
    'eyepacs': Format('EyePACS/Kaggle trainLabels.csv (image, level)', _add_images_table(
        '--csv', 'train (images)', 'trainLabels.csv'),
        lambda a, log: _src('grades_csv').read_eyepacs(a.images, a.csv, lenient=a.lenient, log=log)),
    'messidor': Format('Messidor Annotation_Base<NN>.xls, or a CSV/xlsx export (Messidor 0-3 scale)',
                       _add_images_table(
        '--table', 'Base<NN> image folder', 'Annotation_Base<NN>.xls, .csv or .xlsx'),
        lambda a, log: _src('grades_csv').read_messidor(a.images, a.table, lenient=a.lenient, log=log)),
    'messidor2': Format('Messidor-2 adjudicated grades messidor_data.csv (google-brain or Kaggle '
                        'messidor2preprocess columns)', _add_images_table(
        '--csv', 'Messidor-2 image folder (Kaggle messidor2preprocess: messidor-2/messidor-2/preprocess)',
        'messidor_data.csv: image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable '
        '(google-brain) or id_code,diagnosis,adjudicated_dme,adjudicated_gradable (messidor2preprocess; '
        'id_code = image file name, diagnosis = the adjudicated ICDR grade 0-4)'),
        lambda a, log: _src('grades_csv').read_messidor2(a.images, a.csv, lenient=a.lenient, log=log)),
    'refuge': Format('REFUGE photos, disc/cup masks, fovea and glaucoma tables', _add_refuge,
                     lambda a, log: _src('refuge').read_refuge(a.images, a.masks, tables=a.table, params=_params(a),
                                                               lenient=a.lenient, log=log)),
    'drishti-gs': Format('Drishti-GS1 photos and disc/cup soft maps', _add_drishti,
                         lambda a, log: _src('refuge').read_drishti(
                             a.images, a.gt, labels_table=a.labels, softmap_min=a.softmap_min,
                             params=_params(a), lenient=a.lenient, log=log)),
    'adam': Format('ADAM (iChallenge-AMD): AMD label, fovea, disc and lesion masks', _add_ichallenge,
                   lambda a, log: _src('adam_palm').read_ichallenge(
                       'adam', a.images, tables=a.table, disc_masks=a.disc_masks, lesion_masks=a.lesion_masks,
                       class_map=_class_map(a), foreground=a.mask_foreground, params=_params(a),
                       lenient=a.lenient, log=log)),
    'palm': Format('PALM (iChallenge-PM): pathological-myopia label, fovea, disc and lesion masks', _add_ichallenge,
                   lambda a, log: _src('adam_palm').read_ichallenge(
                       'palm', a.images, tables=a.table, disc_masks=a.disc_masks, lesion_masks=a.lesion_masks,
                       class_map=_class_map(a), foreground=a.mask_foreground, params=_params(a),
                       lenient=a.lenient, log=log)),
    'odir': Format('ODIR-2019 per-eye diagnostic keywords (data.xlsx, CSV, or Kaggle full_df.csv)',
                   _add_images_table(
        '--table', '"Training Images" (Kaggle: preprocessed_images)',
        'data.xlsx / ODIR-5K_Training_Annotations(Updated)_V2.xlsx / full_df.csv'),
        lambda a, log: _src('odir').read_odir(a.images, a.table, lenient=a.lenient, log=log)),
    'e-ophtha': Format('e-ophtha EX or MA annotations', _add_eophtha,
                       lambda a, log: _src('eophtha').read_eophtha(a.root, a.lesion, params=_params(a),
                                                                   lenient=a.lenient, log=log)),
    'yolo': Format('YOLO txt labels + class-name file', _add_yolo,
                   lambda a, log: _src('generic').read_yolo(a.images, a.labels, classes=a.classes,
                                                            lenient=a.lenient, log=log, **_generic(a)), True),
    'coco': Format('COCO detection json', _add_coco,
                   lambda a, log: _src('generic').read_coco(a.json, a.images, lenient=a.lenient, log=log,
                                                            **_generic(a)), True),
    'masks': Format('one folder of binary masks per class', _add_masks,
                    lambda a, log: _src('generic').read_class_masks(
                        a.images, a.masks, foreground=a.foreground, missing=a.missing, params=_params(a),
                        lenient=a.lenient, log=log, **_generic(a)), True),
    'dicom': Format('folder of DICOM photographs -> de-identified PNGs + records', _add_dicom, _read_dicom),
    'codras': Format('our annotation jsonl (CODRAS-style boxes, the bundled sample\'s layout)', _add_codras,
                     lambda a, log: _src('codras').read_codras(a.annotations, a.images, split=a.split, lenient=a.lenient,
                                                               log=log, allow_outside_root=a.allow_outside_root)),
    'box-csv': Format('CSV of boxes, one per row (image, label, x1, y1, x2, y2)', _add_box_csv,
                      lambda a, log: _src('box_csv').read_box_csv(a.csv, a.images, lenient=a.lenient, log=log,
                                                                  allow_outside_root=a.allow_outside_root,
                                                                  **_generic(a)), True),
    'csv': Format('CSV of image-level labels (image, dr_grade, dme_grade, diagnosis, laterality)', _add_csv,
                  lambda a, log: _src('generic').read_label_csv(a.csv, a.images, lenient=a.lenient, log=log,
                                                                allow_outside_root=a.allow_outside_root,
                                                                **_generic(a)), True),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per format, each with ``--out``, ``--lenient``, paths and provenance options."""
    sub = parser.add_subparsers(dest='format', required=True, metavar='FORMAT')
    for name, fmt in FORMATS.items():
        p = sub.add_parser(name, help=fmt.help, description=fmt.help)
        fmt.add(p)
        p.add_argument('--out', type=Path, required=True, help='records jsonl to write')
        p.add_argument('--lenient', action='store_true',
                       help='skip bad boxes / records (counted by reason in the summary) instead of stopping')
        p.add_argument('--allow-outside-root', action='store_true',
                       help='accept absolute image paths and paths outside the dataset folder (trusted files)')
        p.add_argument('--max-image-pixels', type=positive_int, default=None,
                       help="decompression-bomb limit in pixels (default: Pillow's, 89,478,485)")
        p.add_argument('--absolute-paths', action='store_true',
                       help='write absolute image paths (default: relative to the --out folder)')
        p.add_argument('--source-dataset', required=fmt.generic,
                       help='provenance.source_dataset' + (' (required)' if fmt.generic else ' (override)'))
        p.add_argument('--licence', default=None, help="provenance.licence (default: the dataset's, or "
                                                       "\"see the dataset's terms\")")
        p.add_argument('--attribution', default=None, help='provenance.attribution (citation)')
        p.add_argument('--id-prefix', type=id_prefix, default='',
                       help="put before every record id, e.g. 'refuge-': ids of several datasets "
                            "(REFUGE and PALM both have V0001) stay distinct in one build")


def id_prefix(text: str) -> str:
    """``--id-prefix``: letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit (ids name
    files of the build, so no path separator).

    Raises:
        argparse.ArgumentTypeError: any other character.
    """
    if text and not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', text):
        raise argparse.ArgumentTypeError(f'{text!r}: expected letters, digits, ".", "_" or "-", starting with a '
                                         'letter or digit (e.g. refuge-)')
    return text


def finalise(records: Iterable[FundusGenRecord], out: Path, *, absolute: bool = False,
             overrides: Dict[str, str] | None = None, lenient: bool = False, log=None,
             id_prefix: str = '') -> List[FundusGenRecord]:
    """Relativise image paths to ``out``'s folder, apply provenance overrides, put ``id_prefix``
    before every record id, check unique ids.

    Raises:
        FundusDataError: two records share a ``record_id`` (both images named), unless ``lenient``
            (the later one is skipped and logged).
    """
    out_dir = Path(os.path.abspath(out)).parent
    seen: Dict[str, str] = {}
    result = []
    for rec in records:
        if id_prefix:
            rec = rec.model_copy(update={'record_id': id_prefix + rec.record_id})
        if rec.record_id in seen:
            msg = (f'{out}: record_id {rec.record_id!r} given twice, for {seen[rec.record_id]} and {rec.image}; '
                   'ids must be unique within a records file')
            if not lenient:
                raise FundusDataError(msg, reason='duplicate_id')
            log.skip(msg, 'duplicate_id')
            continue
        seen[rec.record_id] = rec.image
        update = {}
        if not absolute:
            update['image'] = os.path.relpath(rec.image, out_dir)
        if overrides:
            update['provenance'] = rec.provenance.model_copy(update=overrides)
        result.append(rec.model_copy(update=update))
    return result


def run(args: argparse.Namespace) -> int:
    """Convert, write ``args.out`` and print the summary.

    Returns:
        0 written, 1 nothing to write (the summary says why).

    Raises:
        FundusDataError, FileNotFoundError, ValueError: bad input (unless ``--lenient`` skips the item);
            the command line prints the message and exits 2.
    """
    from fundusexpert_plugin.core.record import write_records
    from fundusexpert_plugin.core.images import set_max_pixels
    from fundusexpert_plugin.sources.base import ConvertLog
    if args.max_image_pixels:
        set_max_pixels(args.max_image_pixels)
    log = ConvertLog(echo=False)      # every skip and warning is printed once, in the summary below
    overrides = {k: v for k, v in (('source_dataset', args.source_dataset), ('licence', args.licence),
                                   ('attribution', args.attribution)) if v is not None}
    try:
        records = finalise(FORMATS[args.format].read(args, log), args.out, absolute=args.absolute_paths,
                           overrides=overrides, lenient=args.lenient, log=log, id_prefix=args.id_prefix)
    except Exception:
        for message in log.skipped:   # what was skipped before the input became unreadable
            print(f'  skipped: {message}', file=sys.stderr)
        raise
    if not records:
        inputs = ', '.join(_inputs(args))
        why = '' if log.skipped or log.notes else f': the inputs ({inputs}) gave no row or image to convert'
        print(f'fundusexpert: nothing to write to {args.out}{why}\n{log.summary(0)}', file=sys.stderr)
        return 1
    write_records(records, args.out)
    print(f'{args.out}: {log.summary(len(records))}')
    root = image_root_hint(records, Path(args.out).parent)
    if root is not None:
        print(f'  the images lie outside {Path(args.out).parent}: give their folder to the next step, e.g. '
              f'fundusexpert data build --records {args.out} --image-root {root} --out fundusgen')
    return 0


def _inputs(args: argparse.Namespace) -> List[str]:
    """The input paths given on the command line (every Path option but the outputs), for messages."""
    out = []
    for key, value in vars(args).items():
        if key in ('out', 'images_out'):
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, Path):
                out.append(str(v))
    return list(dict.fromkeys(out))


def image_root_hint(records, out_dir: Path) -> Optional[str]:
    """The folder holding every record's image (their common parent), when some image lies outside
    ``out_dir`` (the records file's folder, which ``data build`` / ``data validate`` take as the dataset
    folder unless ``--image-root`` is given); ``None`` when all lie inside it."""
    out_dir = Path(os.path.abspath(out_dir))
    images = [Path(os.path.abspath(out_dir / r.image)) for r in records]
    if all(out_dir in p.parents for p in images):
        return None
    return os.path.relpath(os.path.commonpath([str(p.parent) for p in images]))
