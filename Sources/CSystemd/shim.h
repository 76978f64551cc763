#ifndef MAMBAD_CSYSTEMD_SHIM_H
#define MAMBAD_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
