/*
   Rules that are not espionage but should not ship as they are.
*/

rule Hygiene_No_Provenance {
   meta:
      description = "who wrote this, and why?"
      expect = "provenance:low"
   strings:
      $a = "c0ffee-mutex-17"
   condition:
      uint16(0) == 0x5A4D and $a
}

rule Hygiene_Broad_Short_Strings {
   meta:
      author = "sample"
      reference = "test"
      expect = "broad:medium"
   strings:
      $a = "ab"
      $b = { 00 01 }
      $c = "the"
   condition:
      any of them
}

rule Hygiene_Broad_No_Strings {
   meta:
      author = "sample"
      reference = "test"
      expect = "broad:medium"
   condition:
      filesize < 2MB
}

rule Hygiene_Broad_Common {
   meta:
      author = "sample"
      reference = "test"
      expect = "broad:medium"
   strings:
      $a = "http://"
      $b = "Microsoft"
   condition:
      any of them
}
