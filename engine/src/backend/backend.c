/* backend/backend.c - backend-independent helpers of the op table (backend.h). */
#include "backend/backend.h"

void eng_backend_destroy(eng_backend *be)
{
    if (be && be->destroy) be->destroy(be);
}
