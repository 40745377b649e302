// OpenBLAS's CBLAS interface. Debian puts cblas.h on the default multiarch include path
// (/usr/include/x86_64-linux-gnu/cblas.h, through the alternatives system).
#include <cblas.h>
