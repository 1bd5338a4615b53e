#include "kiln_abi.h"
