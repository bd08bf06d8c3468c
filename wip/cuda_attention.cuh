/* >>cuda-attention (staged; inlined into nam_cuda.cuh when done) */
