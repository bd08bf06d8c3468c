/* >>cuda-moe (staged; inlined into nam_cuda.cuh when done) */
