// oneDNN (Debian: libdnnl-dev 2.6; no pkg-config file, headers in /usr/include/oneapi/dnnl).
#include <oneapi/dnnl/dnnl.h>
