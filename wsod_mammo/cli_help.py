"""Help texts of the LightningCLI subcommands: what wsod's own options mean, shown before Lightning's long list.

LightningCLI's help lists hundreds of Trainer options first and never says that a model's or data module's
options are shown by ``--model.help CLASS`` / ``--data.help CLASS``; the description printed at the top of
``wsod fit --help`` says it, and ``--ckpt_path`` says what ``best`` and ``last`` resolve to in wsod.
"""

from __future__ import annotations

from typing import Any

from wsod_mammo.commands import SUBCOMMANDS

CKPT_PATH_HELP = (
    "checkpoint to start from (fit: resume) or to evaluate: a file, or `best` (best.ckpt, the highest validation "
    "fusion AUROC) or `last` (last.ckpt, the end of the latest epoch) of the newest run (under the logger's "
    "save_dir, or in the dirpath of the config's ModelCheckpoint callbacks), or `<run id>:best`, `<run folder>:best` "
    "(`:last` alike) for that run's. NYU's .p weights are not a checkpoint: --model.init_from_nyu FILE. "
    "validate/test/predict need weights; `untrained` evaluates the freshly initialized network (a baseline). "
    "Checkpoints are loaded with weights_only=True."
)

OWN_OPTIONS = """{purpose}.

wsod's own options (Lightning's Trainer options follow below):
  --config FILE           a YAML config; repeat to compose (later files override), e.g.
                          --config configs/gmic_vindr.yaml --config configs/table2/gradcam.yaml
  --ckpt_path best|last|<run id>:best|<run folder>:best|FILE
                          best: best.ckpt (highest validation fusion AUROC); last: last.ckpt (latest epoch), of
                          the newest run, or of the run named (<run id>:last, <run folder>:last alike);
                          untrained: the freshly initialized network (validate/test/predict, a baseline)
  --model.help GMICLitModule
                          the model's options (saliency methods, beta, optimizer, init_from_nyu, ...)
  --model.model.help GMIC the network's options (percent_t, num_patches, crop_shape, ...); it lists them as
                          --model.NAME, but they are set as --model.model.NAME
  --data.help VinDrMammoDataModule
                          the data's options (data_root, cache_dir, selection, input_size, batch_size, ...)
  --print_config          the resolved config, to save and edit
Example: wsod {name} --config configs/demo.yaml{example}"""

EXAMPLES = {"test": " --ckpt_path best", "validate": " --ckpt_path best", "predict": " --ckpt_path best"}


def _formatter() -> type:
    """jsonargparse's help formatter, keeping the description's line breaks (the option list above)."""
    from argparse import RawDescriptionHelpFormatter

    from jsonargparse import DefaultHelpFormatter

    class Formatter(RawDescriptionHelpFormatter, DefaultHelpFormatter):
        pass

    return Formatter


def subcommand_parser_kwargs() -> dict[str, Any]:
    """``parser_kwargs`` for LightningCLI: per Lightning subcommand, a description naming wsod's own options."""
    kwargs: dict[str, Any] = {"prog": "wsod", "formatter_class": _formatter(), "allow_abbrev": False}
    for name in ("fit", "validate", "test", "predict"):
        purpose = SUBCOMMANDS[name].purpose
        text = OWN_OPTIONS.format(purpose=purpose[0].upper() + purpose[1:], name=name, example=EXAMPLES.get(name, ""))
        # no abbreviations: a misspelt `--trainer.max_epoch` was taken as the option it begins
        kwargs[name] = {"description": text, "formatter_class": _formatter(), "allow_abbrev": False}
    return kwargs


def customize_subcommand_parser(parser: Any, subcommand: str) -> None:
    """wsod's help for ``--ckpt_path``, and no Lightning metrics dump after test (wsod prints its tables); validate
    keeps Lightning's table, its only output (AUROC per head, TPR@FPPI and the validated threshold per method)."""
    for action in getattr(parser, "_actions", []):
        if action.dest == "ckpt_path":
            action.help = CKPT_PATH_HELP
    if subcommand == "test":
        parser.set_defaults(verbose=False)
