# A Megatron launch as an operator might write it (tests/cli_test.sh compares nam args with it).
torchrun --nproc-per-node 8 pretrain_hybrid.py \
    --spec megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec \
    --hybrid-override-pattern "*EME*EME*EMG*|EME*EME*EMG*E|ME*EME*EMG*EM|E*EME*EMG*EME/*-" \
    --num-layers 52 --tensor-model-parallel-size=2 \
    --pipeline-model-parallel-size 2 \
    --hidden-size 4096 --ffn-hidden-size 10880 \
    --num-attention-heads 32 --group-query-attention --num-query-groups 8 \
    --seq-length 4096 --max-position-embeddings 8192 \
    --use-rotary-position-embeddings \
    --moe-aux-loss-coeff 1e-4 \
    --lr 3e-4   # a training flag nam does not model
