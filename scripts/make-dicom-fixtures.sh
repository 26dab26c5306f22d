#!/usr/bin/env bash
# Rebuilds trainer/tests/fixtures/dicom: the small CT series of trainer/tests/import_dicom.rs
# (4 slices of 36x32 pixels, raw value 1000 + 10 * (row * 36 + column) + 3 * slice, HU = raw - 1024),
# compressed by the tools hospitals' archives use, so that the importer is tested on real
# encoders' output rather than on files medseg wrote itself. Needs pydicom, pylibjpeg and
# pylibjpeg-openjpeg (pip) and the Debian package dcmtk. Tests only read the committed files.
set -euo pipefail
cd "$(dirname "$0")/.."
out=trainer/tests/fixtures/dicom
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT

python3 - "$raw" <<'EOF'
import sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

COLS, ROWS, SLICES = 36, 32, 4
ORIGIN, SP = (-12.0, 30.0, 40.0), (0.7, 0.9, 2.5)
for k in range(SLICES):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.2.1.{k}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "CT"
    ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + SP[2] * k]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [SP[0], SP[1]]
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 100, 200
    r, c = np.mgrid[0:ROWS, 0:COLS]
    ds.PixelData = (1000 + 10 * (r * COLS + c) + 3 * k).astype("<u2").tobytes()
    # File names run against the slice order, as in the Rust test's series.
    ds.save_as(f"{sys.argv[1]}/IM{9 - k}", enforce_file_format=True)
EOF

rm -rf "$out"
for kind in jpeg-lossless rle j2k deflate jpeg-ls; do mkdir -p "$out/$kind"; done
for f in "$raw"/IM*; do
  name=$(basename "$f")
  dcmcjpeg --encode-lossless-sv1 "$f" "$out/jpeg-lossless/$name"   # 1.2.840.10008.1.2.4.70
  dcmcrle "$f" "$out/rle/$name"                                    # 1.2.840.10008.1.2.5
  # gdcmconv --j2k (GDCM 3.0.21) crashes on these small frames; OpenJPEG through pydicom:
  python3 -c 'import sys, pydicom; from pydicom.uid import JPEG2000Lossless as J
d = pydicom.dcmread(sys.argv[1]); d.compress(J); d.save_as(sys.argv[2])' \
    "$f" "$out/j2k/$name"                                          # 1.2.840.10008.1.2.4.90
  dcmconv --write-xfer-deflated "$f" "$out/deflate/$name"          # 1.2.840.10008.1.2.1.99
  dcmcjpls --encode-lossless "$f" "$out/jpeg-ls/$name"             # 1.2.840.10008.1.2.4.80
done
du -sh "$out"
