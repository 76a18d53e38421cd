// Translation unit that owns the precompiled LibTorch header (see common/torch_pch.h).
#include "common/torch_pch.h"
