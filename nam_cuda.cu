/* nam_cuda.cu - the one CUDA translation unit: instantiates nam_cuda.cuh. */
#define NAM_CUDA_IMPLEMENTATION
#include "nam_cuda.cuh"
