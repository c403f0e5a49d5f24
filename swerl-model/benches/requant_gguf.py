#!/usr/bin/env python3
"""Rewrites a GGUF model with every tensor in one float type (f32, bf16 or f16), metadata copied.

    python swerl-model/benches/requant_gguf.py IN.gguf OUT.gguf f32|bf16|f16

The decoding benchmark (`vs_engines.py`) feeds llama.cpp the same weights swerl uses: swerl loads
the quantized SmolLM2 GGUF dequantized to f32, so the llama.cpp copies are that dequantization
(f32) and its bf16/f16 roundings. Needs the `gguf` package (PyPI) with numpy.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize

TYPES = {"f32": GGMLQuantizationType.F32, "bf16": GGMLQuantizationType.BF16,
         "f16": GGMLQuantizationType.F16}


def main(src, dst, kind):
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name == "general.file_type":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    writer.add_file_type({"f32": 0, "f16": 1, "bf16": 32}[kind])
    for t in reader.tensors:
        # ne0 is the fastest axis: numpy's shape is the reverse of GGUF's.
        shape = tuple(int(x) for x in reversed(t.shape))
        values = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        # Norm vectors stay f32 in every llama.cpp conversion.
        target = GGMLQuantizationType.F32 if values.ndim == 1 else TYPES[kind]
        data = values if target == GGMLQuantizationType.F32 else quantize(values, target)
        writer.add_tensor(t.name, data, raw_dtype=target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in TYPES:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
