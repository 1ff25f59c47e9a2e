/* sluice/sluice.h: the whole public API of the sluice core. */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include "sluice/addr.h"
#include "sluice/bufpool.h"
#include "sluice/caps.h"
#include "sluice/errors.h"
#include "sluice/limits.h"
#include "sluice/policy.h"
#include "sluice/proxy.h"
#include "sluice/ratelim.h"
#include "sluice/relay.h"

#endif
