#ifndef MAMBAD_COPENBLAS_SHIM_H
#define MAMBAD_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
