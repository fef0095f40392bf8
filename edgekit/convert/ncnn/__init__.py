"""NCNN: export through pnnx, the .param/.bin formats, edgekit's own INT8 quantizer and its speed plan.

- `converter`: the registered converter (ncnn-fp32 / ncnn-fp16 / ncnn-int8) and the pnnx export;
- `param`, `weights`: read and write the .param graph and the .bin weight blobs;
- `calib`, `int8`: activation statistics (KL as ncnn2table, or absmax) and the INT8 rewrite of the model;
- `int8_artifact`: the ncnn-int8 artifact built from the fp32 export (quantized, planned, its sidecar);
- `plan`: which layers stay int8, chosen by instructions counted on the emulated cores;
- `runtime`: the host-side ncnn runner and the model.io.json sidecar (blob names, ncnn options).

Modules are imported by their full path; this package imports nothing, so reading a .param does not load pnnx.
"""
