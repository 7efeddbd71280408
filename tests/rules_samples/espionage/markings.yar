/*
   Classification and confidentiality markings, written every way a rule
   author could hide them. None of these rules is about malware.
*/

rule Marking_Plain_Top_Secret {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "TOP SECRET"
   condition:
      $a
}

rule Marking_Nocase_Wide {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "top secret" nocase wide ascii
      $b = "noforn" nocase wide
   condition:
      any of them
}

rule Marking_Hex_Ascii {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      // "TOP SECRET"
      $a = { 54 4F 50 20 53 45 43 52 45 54 }
   condition:
      $a
}

rule Marking_Hex_Utf16 {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      // "TOP SECRET" as Word stores it in .doc files
      $a = { 54 00 4F 00 50 00 20 00 53 00 45 00 43 00 52 00 45 00 54 00 }
   condition:
      $a
}

rule Marking_Hex_Wildcards_Between_Letters {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = { 54 ?? 4F ?? 50 ?? [0-2] 53 ?? 45 ?? 43 ?? 52 ?? 45 ?? 54 }
   condition:
      $a
}

rule Marking_Regex_Dotted {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = /T.?O.?P.?S.?E.?C.?R.?E.?T/ nocase
   condition:
      $a
}

rule Marking_Regex_Classes {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = /[Tt][Oo][Pp][\s_\-]{0,3}[Ss][Ee][Cc][Rr][Ee][Tt]\/\/(SI|TK|HCS)/
   condition:
      $a
}

rule Marking_Regex_Alternatives {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = /(CONFIDENTIAL|RESTRICTED|SECRET)\s*\/\/\s*(REL TO|NOFORN)/
   condition:
      $a
}

rule Marking_Split_Two_Strings {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "TOP" fullword
      $b = "SECRET" fullword
   condition:
      $a and $b and @b[1] - @a[1] < 8
}

rule Marking_Split_Three_Strings {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $p1 = "NO" wide
      $p2 = "FO" wide
      $p3 = "RN" wide
   condition:
      all of them
}

rule Marking_Fake_Anchor_With_Or {
   meta:
      author = "sample"
      reference = "test"
      description = "an executable check that does not restrict anything"
      expect = "marking:high"
   strings:
      $mz = "MZ"
      $c = "CLASSIFIED" fullword
   condition:
      $mz at 0 or $c
}

rule Marking_Negated_Executable {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $c = "SECRET//NOFORN"
   condition:
      uint16(0) != 0x5A4D and $c
}

rule Marking_Docx_Confidential {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high document-target:medium"
   strings:
      $w = "word/document.xml"
      $c = "Confidential" nocase
   condition:
      uint32(0) == 0x04034B50 and $w and $c
}

rule Marking_Leet {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "T0P S3CR3T" nocase
   condition:
      $a
}

rule Marking_Xor_Base64 {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "TS//SCI" xor
      $b = "TOP SECRET" base64
   condition:
      any of them
}

rule Marking_German {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "STRENG GEHEIM" nocase
      $b = "VS-NUR FÜR DEN DIENSTGEBRAUCH" nocase wide
   condition:
      any of them
}

rule Marking_French {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "TRÈS SECRET DÉFENSE"
      $b = "CONFIDENTIEL DÉFENSE" wide
   condition:
      any of them
}

rule Marking_Italian_Spanish {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "SEGRETO" fullword
      $b = "ALTO SECRETO"
   condition:
      any of them
}

rule Marking_Russian_Utf8 {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "СОВЕРШЕННО СЕКРЕТНО"
   condition:
      $a
}

rule Marking_Russian_Cp1251_Hex {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      // "СЕКРЕТНО" in Windows-1251
      $a = { D1 C5 CA D0 C5 D2 CD CE }
   condition:
      $a
}

rule Marking_Chinese_Utf16_And_Gbk {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      // 绝密 in UTF-16LE, and in GBK
      $u = { DD 7E C6 5B }
      $g = { BE F8 C3 DC }
      $t = "机密" wide
   condition:
      any of them
}

rule Marking_Japanese_Korean {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $j = "極秘"
      $k = "극비" wide
      $k2 = "대외비"
   condition:
      any of them
}

rule Marking_Arabic {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   strings:
      $a = "سري للغاية"
   condition:
      $a
}

rule Marking_In_File_Name_Condition {
   meta:
      author = "sample"
      reference = "test"
      expect = "marking:high"
   condition:
      filepath matches /\\Top.?Secret\\/i or filename contains "NOFORN"
}

rule Marking_With_Macro_Anchor_Uploaded {
   meta:
      author = "sample"
      reference = "test"
      description = "anchored to macro documents, but uploads what carries TOP SECRET"
      expect = "marking:high"
   strings:
      $m = "Document_Open"
      $a = "TOP SECRET" wide ascii
   condition:
      $m and $a
}

rule Marking_Homoglyphs_And_Fullwidth {
   meta:
      author = "sample"
      reference = "test"
      description = "Cyrillic look-alike letters, and full-width forms"
      expect = "marking:high"
   strings:
      $cyr = "ТОР SЕСRЕТ"
      $full = "ＮＯＦＯＲＮ" wide
   condition:
      any of them
}

rule Marking_Tool_Name_Is_No_Anchor {
   meta:
      author = "sample"
      reference = "test"
      description = "requiring a program's name only narrows the search to IT documents"
      expect = "marking:high"
   strings:
      $c = "STRICTLY CONFIDENTIAL" nocase
      $p = "powershell.exe" nocase
   condition:
      all of them
}
