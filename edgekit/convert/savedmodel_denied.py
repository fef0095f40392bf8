"""The op families a SavedModel may not hold (edgekit.convert.savedmodel_ops reads a model's graph against them):
DENIED, each op with why (files, Python, debug URLs, tf.data sources and sinks, the network, summaries, graphs
built from strings), the checkpoint ops the saver alone may hold, ops whose names only look like file ops
(LOOKALIKES), the print streams that are no file, and the attribute names that name a file, folder or URL.
tests/test_savedmodel_ops.py sorts every op TensorFlow registers against these lists."""

from __future__ import annotations

import re

_FILES = "reads or writes files"
_PYTHON = "runs Python code"
_DEBUG = "sends tensors to a debug URL (file:// or grpc://)"
_DATA = "reads or writes files (a tf.data source or sink)"
_NET = "talks to a tf.data service over the network"
_RPC = "serves or calls functions over the network (gRPC)"
_SUMMARY = "writes summary files"
_HIDDEN = "builds a graph from a string, out of sight of this check"

WRITES = frozenset({"Save", "SaveSlices", "SaveV2", "MergeV2Checkpoints"})
RESTORES = frozenset({"Restore", "RestoreSlice", "RestoreV2"})
CHECKPOINT = WRITES | RESTORES

DENIED: dict[str, str] = {
    **dict.fromkeys(CHECKPOINT, "writes or reads a checkpoint at a path the model chooses"),
    **dict.fromkeys(
        (
            "WriteFile",
            "ReadFile",
            "MatchingFiles",
            "ImmutableConst",  # memory-maps a file
            "FileSystemSetConfiguration",
            "RecordInput",
            "InitializeTableFromTextFile",
            "InitializeTableFromTextFileV2",
            "GenerateVocabRemapping",
            "LoadAndRemapMatrix",
            "DecodeProtoV2",  # descriptor_source: a file
            "EncodeProto",
            "TFRecordReader",
            "TFRecordReaderV2",
            "TextLineReader",
            "TextLineReaderV2",
            "FixedLengthRecordReader",
            "FixedLengthRecordReaderV2",
            "WholeFileReader",
            "WholeFileReaderV2",
            "LMDBReader",
            # registered by TensorFlow's libraries, not in tf.raw_ops
            "DumpTensor",  # writes log_dir_path/file_name
            "CalibrationStatisticsSaver",  # writes output_file_path
            "DTensorRestoreV2",  # reads a checkpoint at its prefix
        ),
        _FILES,
    ),
    **dict.fromkeys(("PyFunc", "PyFuncStateless", "EagerPyFunc"), _PYTHON),
    **dict.fromkeys(
        (
            "DebugIdentity",
            "DebugIdentityV2",
            "DebugIdentityV3",
            "DebugNanCount",
            "DebugNumericSummary",
            "DebugNumericSummaryV2",
            "Copy",  # debug_ops_spec: debug URLs
            "CopyHost",
        ),
        _DEBUG,
    ),
    **dict.fromkeys(
        (
            "TFRecordDataset",
            "TFRecordDatasetV2",
            "FixedLengthRecordDataset",
            "FixedLengthRecordDatasetV2",
            "TextLineDataset",
            "CSVDataset",
            "CSVDatasetV2",
            "ExperimentalCSVDataset",
            "LMDBDataset",
            "ExperimentalLMDBDataset",
            "SqlDataset",
            "ExperimentalSqlDataset",
            "MatchingFilesDataset",
            "ExperimentalMatchingFilesDataset",
            "DatasetToTFRecord",
            "ExperimentalDatasetToTFRecord",
            "SaveDataset",
            "SaveDatasetV2",
            "LoadDataset",
            "DistributedSave",
            "SnapshotDataset",
            "SnapshotDatasetV2",
            "SnapshotDatasetReader",
            "SnapshotNestedDatasetReader",
            "SnapshotChunkDataset",
            "ListSnapshotChunksDataset",
            "CacheDataset",  # its filename: a cache on disk
            "CacheDatasetV2",
        ),
        _DATA,
    ),
    **dict.fromkeys(
        (
            "DataServiceDataset",
            "DataServiceDatasetV2",
            "DataServiceDatasetV3",
            "DataServiceDatasetV4",
            "RegisterDataset",
            "RegisterDatasetV2",
        ),
        _NET,
    ),
    **dict.fromkeys(
        (  # tf.distribute.experimental.rpc (not in tf.raw_ops): a gRPC server or client
            "RpcServer",
            "RpcServerRegister",
            "RpcServerStart",
            "RpcClient",
            "RpcCall",
            "RpcCheckStatus",
            "RpcGetValue",
            "DeleteRpcFutureResource",
        ),
        _RPC,
    ),
    **dict.fromkeys(("DatasetFromGraph",), _HIDDEN),
    **dict.fromkeys(
        (
            "CreateSummaryFileWriter",
            "CreateSummaryDbWriter",
            "SummaryWriter",
            "WriteSummary",
            "WriteScalarSummary",
            "WriteHistogramSummary",
            "WriteImageSummary",
            "WriteAudioSummary",
            "WriteGraphSummary",
            "WriteRawProtoSummary",
            "FlushSummaryWriter",
            "CloseSummaryWriter",
            "StatsAggregatorSetSummaryWriter",
        ),
        _SUMMARY,
    ),
}

# ops whose names look like file ops but touch no file (tests/test_savedmodel_ops.py: every registered op the
# pattern there matches is in DENIED or here)
LOOKALIKES = frozenset(
    {
        "ReadVariableOp",  # a variable, in memory
        "DisableCopyOnRead",
        "ShardedFilename",  # string formatting only
        "ShardedFilespec",
        "Print",  # stderr
        "PrintV2",  # refused unless its output_stream is stderr, stdout or the log (_print_to_file)
        "Snapshot",  # a copy of a tensor
        "CheckNumericsV2",
        "DecodeCSV",  # parses strings
        "Fingerprint",
        "SdcaFprint",
        "DatasetFingerprint",
        "IteratorGetModelProto",
        "DebugGradientIdentity",  # identities for tfdbg's gradients: no URL
        "DebugGradientRefIdentity",
        "BoostedTreesExampleDebugOutputs",
        "BoostedTreesMakeStatsSummary",
        "CopyOp",  # a copy of a tensor (a test op of TensorFlow's)
        "CopyToMesh",  # DTensor: a tensor onto a device mesh
        "CopyToMeshGrad",
        "LoadAllTPUEmbeddingParameters",  # TPU embedding tables from its input tensors
        "TpuHandleToProtoKey",
        # summaries as serialized protos (strings): only the Write*/writer ops in DENIED put them in a file
        "AudioSummary",
        "AudioSummaryV2",
        "HistogramSummary",
        "ImageSummary",
        "MergeSummary",
        "ScalarSummary",
        "TensorSummary",
        "TensorSummaryV2",
        "StatsAggregatorSummary",
        "ExperimentalStatsAggregatorSummary",
        # a reader's own ops: only the reader ops in DENIED make a reader of files (IdentityReader reads strings)
        "IdentityReader",
        "IdentityReaderV2",
        *(
            f"Reader{what}{v}"
            for what in (
                "NumRecordsProduced",
                "NumWorkUnitsCompleted",
                "Read",
                "ReadUpTo",
                "Reset",
                "RestoreState",
                "SerializeState",
            )
            for v in ("", "V2")
        ),
    }
)

STREAMS = frozenset({"stderr", "stdout", "log(info)", "log(warning)", "log(error)"})

# A node whose string attribute is named like a file, folder or URL reads or writes where that names
# (FixedUnigramCandidateSampler's vocab_file, DumpTensor's log_dir_path, Skipgram's filename...), whatever its op:
# refused when the attribute holds a string or is a placeholder the calling node fills. None of the saver's ops
# has one (MergeV2Checkpoints' delete_old_dirs and allow_missing_files are booleans).
PATH_ATTR = re.compile(r"file|path|dir|folder|url|uri", re.IGNORECASE)
# attributes that pattern matches which name no file: CudnnRNN's and RiscSort's direction
# (unidirectional/bidirectional, ascending/descending)
HARMLESS_PATH_ATTRS = frozenset({"direction"})
