/* >>cuda-ssd (staged; inlined into nam_cuda.cuh when done) */
